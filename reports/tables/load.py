"""Loading run folders: :func:`load_run` checks every file a report reads before it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES
from reports.tables.csv_checks import KNOWN_TABLES, check_recorded, read_table
from reports.tables.maps_npz import read_maps
from reports.tables.run import ReportError, Run, clean_path
from reports.tables.summary_json import is_int, read_summary

__all__ = ["load_run", "as_runs"]


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a run folder and check every known table against the schema.

    Args:
        path: folder written by the deletion, occlusion and/or sparsity commands.
        label: name shown in the report; default summary.json's ``"label"``.

    Raises:
        ReportError: the folder is missing, has no summary.json or one of an older schema (re-run
            the evaluation), holds none of the known CSVs, a CSV cannot be parsed, lacks a
            required column or has a value outside its range (the message names the file and the
            column), or maps.npz is malformed.
    """
    path = Path(path)
    if not path.exists():
        raise ReportError(f"run folder not found: {path}")
    if not path.is_dir():
        raise ReportError(f"{path} is a file; pass the folder an evaluation command wrote into")
    if not (path / SUMMARY_JSON).is_file():
        has_tables = any((path / name).is_file() for name in KNOWN_TABLES)
        raise ReportError(
            f"{path} has no {SUMMARY_JSON}; " + (
                "it was written by an older ersm-eval or edited, re-run the evaluation that wrote it" if has_tables else
                f"expected the folder an evaluation wrote, with {SUMMARY_JSON} and at least one of {', '.join(TABLES)} "
                "(run `ersm-eval deletion`, `occlusion` or `sparsity` with this folder as output)"))
    summary = read_summary(path / SUMMARY_JSON)
    n_tokens = summary["model"]["n_tokens"] if is_int(summary["model"]["n_tokens"]) else None
    notes: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    empty: set[str] = set()
    for name in KNOWN_TABLES:
        file = path / name
        if file.is_file():
            table = read_table(file, name, n_tokens)
            if table.empty:
                notes.append(f"{name} has no rows and was skipped")
                empty.add(name)
            else:
                tables[name] = table
    if not tables:
        if notes:
            raise ReportError(f"{path}: every table is empty ({'; '.join(notes)})")
        raise ReportError(
            f"{path} holds none of the tables a report is built from; expected at least one of "
            f"{', '.join(TABLES)} (run `ersm-eval deletion`, `occlusion` or `sparsity` with this folder as output)"
        )
    check_recorded(path, summary, tables, empty)
    maps = read_maps(path / MAPS_NPZ, summary) if (path / MAPS_NPZ).is_file() else None
    given = label or summary.get("label") or clean_path(path.resolve().name)
    return Run(path=path, label=str(given), summary=summary, tables=tables, maps=maps, notes=notes, sources=[path])


def as_runs(items: Iterable[Run | str | Path]) -> list[Run]:
    """Runs as given, loading any folder path among them with :func:`load_run`."""
    return [item if isinstance(item, Run) else load_run(item) for item in items]
