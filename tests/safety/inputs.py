"""Test helpers for the safety rules: input trees hashed before and after a command, tiny inputs.

``untouched(*paths)`` snapshots every file and folder under the given inputs (path,
kind, bytes' sha256, link targets) and, when the block ends, asserts that nothing
was added, removed or changed. ``run_cli`` runs the CLI in-process and checks the
bad-input contract when asked: non-zero exit, no traceback, one line of output.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from ersm_core.checkpoint import save_checkpoint
from ersm_core.model import ModelConfig, build_model

__all__ = ["tree_digest", "untouched", "run_cli", "one_line_error", "imagefolder", "two_class_checkpoint"]

_runner = CliRunner()


def tree_digest(path: str | Path) -> dict[str, str]:
    """{relative path: 'file <sha256>' | 'dir' | 'link <target>'} of a file or folder (links not followed)."""
    path = Path(path)
    if path.is_symlink():
        return {".": f"link {os.readlink(path)}"}
    if path.is_file():
        return {".": "file " + hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.exists():
        return {".": "missing"}
    out = {".": "dir"}
    for root, dirs, files in os.walk(path):  # followlinks=False: a link is recorded, not entered
        for name in dirs + files:
            full = Path(root) / name
            rel = str(full.relative_to(path))
            if full.is_symlink():
                out[rel] = f"link {os.readlink(full)}"
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file " + hashlib.sha256(full.read_bytes()).hexdigest()
    return out


@contextmanager
def untouched(*paths: str | Path | None) -> Iterator[None]:
    """Assert that every given input (file or folder tree) is byte-for-byte the same after the block."""
    given = [Path(p) for p in paths if p is not None]
    before = {p: tree_digest(p) for p in given}
    yield
    for p in given:
        after = tree_digest(p)
        changed = sorted(k for k in set(before[p]) | set(after) if before[p].get(k) != after.get(k))
        assert not changed, f"input {p} was modified: {changed[:10]}"


def run_cli(*args: object):
    """Run ``ersm-eval ARGS`` in-process; a traceback in the output is always a failure."""
    result = _runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, *fragments: str) -> str:
    """Assert the bad-input contract (exit code 2, exactly one non-empty output line holding
    every fragment) and return that line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{result.output}"
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def imagefolder(root: Path, classes=("cat", "dog"), per_class=(3, 2), split: str = "test", seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.png`` with distinct random 40x40 images; returns root."""
    rng = np.random.default_rng(seed)
    counts = per_class if isinstance(per_class, (tuple, list)) else [per_class] * len(classes)
    for cls, count in zip(classes, counts):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def two_class_checkpoint(path: Path, names=("cat", "dog"), image_size: int = 32) -> Path:
    """An untrained compact_cnn ERSM checkpoint (seed 0) for two classes."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=len(names), image_size=image_size)).eval()
    return save_checkpoint(path, model, list(names), {"dataset": "imagefolder"})
