"""A comparison killed part-way (SIGKILL) and resumed with --resume writes byte-identical tables."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 24

# The CLI in a child process whose progress bar kills it with SIGKILL (no clean-up runs) once `after` images of
# the comparison's evaluation are done.
_KILLER = textwrap.dedent("""
    import contextlib, os, signal, sys
    after = int(os.environ["KILL_AFTER_IMAGES"])

    @contextlib.contextmanager
    def killing_bar(total, description):
        done = [0]
        def advance(n):
            done[0] += n
            if description.startswith("compare") and done[0] >= after:
                os.kill(os.getpid(), signal.SIGKILL)
        yield advance

    import cli.compare
    cli.compare.bars = lambda quiet: killing_bar
    from cli.main import app
    app(sys.argv[1:], prog_name="ersm-eval")
""")


def _args(checkpoints: list[Path], out: Path, *extra: str) -> list[str]:
    return ["compare", *map(str, checkpoints), "--dataset", "synthetic", "--limit", str(LIMIT), "--rankings",
            "energy,cam,random", "--seeds", "0", "--occlusion-patterns", "random_squares", "--occlusion-severities",
            "0.4", "--n-boot", "200", "--batch-size", "4", "--out", str(out), "--quiet", *extra]


def _run(args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ERSM_EVAL_RESUME_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    if kill_after is None:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                              timeout=600)
    env["KILL_AFTER_IMAGES"] = str(kill_after)
    return subprocess.run([sys.executable, "-c", _KILLER, *args], env=env, capture_output=True, text=True, timeout=600)


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
    assert "that an interrupted comparison had finished" in resumed.stderr
    assert _tables(out) == _tables(tmp_path / "whole")
    assert not store_folder(out).exists()
