"""A comparison killed part-way (SIGKILL) and resumed with --resume writes byte-identical tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.killed_runs import ROOT, cli_env, killed_run

LIMIT = 24



def _args(checkpoints: list[Path], out: Path, *extra: str) -> list[str]:
    return ["compare", *map(str, checkpoints), "--dataset", "synthetic", "--limit", str(LIMIT), "--rankings",
            "energy,cam,random", "--seeds", "0", "--occlusion-patterns", "random_squares", "--occlusion-severities",
            "0.4", "--n-boot", "200", "--batch-size", "4", "--out", str(out), "--quiet", *extra]


def _run(args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    if kill_after is not None:  # counting the comparison's own bar (the randomization check's come after it)
        return killed_run(args, kill_after, prefix="compare")
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=cli_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _tables(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def test_killed_comparison_resumes_to_the_same_tables(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    from ersm_eval.resume import store_folder

    checkpoints = [tiny_baseline_checkpoint, tiny_checkpoint]
    whole = _run(_args(checkpoints, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "cut"
    killed = _run(_args(checkpoints, out), kill_after=12)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not out.exists() and store_folder(out).is_dir()
    other = _run(_args([tiny_checkpoint], out, "--resume"))
    assert other.returncode != 0 and "cannot resume" in other.stderr + other.stdout
    assert "Traceback" not in other.stderr and not out.exists()
    resumed = _run(_args(checkpoints, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "that an interrupted comparison had finished" in " ".join(resumed.stderr.split())
    assert _tables(out) == _tables(tmp_path / "whole")
    assert not store_folder(out).exists()
