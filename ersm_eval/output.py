"""Writing a run's output folder atomically: a temporary folder, renamed when complete.

A run interrupted half-way (error, Ctrl-C) leaves no folder under the final name,
so nothing half-written is ever passed off as done.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ersm_core.checkpoint import versions
from ersm_core.errors import ConfigError
from ersm_eval.schema import SUMMARY_JSON, TABLES

__all__ = ["check_output_dir", "output_folder", "write_table", "write_json", "run_info"]


def check_output_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing non-empty folder unless ``overwrite``; call before any work starts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} exists and is not empty; pass --overwrite to replace it or choose another --out")
    return out


@contextmanager
def output_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``; on error it is removed."""
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_table(folder: Path, name: str, df: pd.DataFrame) -> Path:
    """Write a schema table as CSV (columns checked against the schema, floats at full precision)."""
    if name in TABLES:
        missing = [c for c in TABLES[name] if c not in df.columns]
        if missing:
            raise RuntimeError(f"bug: table {name} lacks columns {missing}")
    path = Path(folder) / name
    df.to_csv(path, index=False, float_format="%.10g")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_json(folder: Path, data: dict[str, Any], name: str = SUMMARY_JSON) -> Path:
    """Write a JSON file with stable key order."""
    path = Path(folder) / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def run_info(started: float) -> dict[str, Any]:
    """Command line, versions and timing for summary.json."""
    return {
        "command_line": " ".join(["ersm-eval", *sys.argv[1:]]) if sys.argv else "",
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "run_seconds": round(time.time() - started, 3),
    }
