"""A command run in a child process that SIGKILLs itself half-way (no clean-up of any kind runs): the resume tests.

The child replaces the progress bars of every command with one that kills the process once ``after`` images
are done, counting only bars whose description starts with ``prefix`` (a deterministic point in the middle
of an evaluation, a comparison or a study).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_KILLER = textwrap.dedent("""
    import contextlib, os, signal, sys
    import cli.common
    after, prefix = int(os.environ["KILL_AFTER_IMAGES"]), os.environ.get("KILL_BAR_PREFIX", "")

    @contextlib.contextmanager
    def killing_bar(total, description):
        done = [0]
        def advance(n):
            done[0] += n
            if description.startswith(prefix) and done[0] >= after:
                os.kill(os.getpid(), signal.SIGKILL)
        yield advance

    cli.common.bars = lambda quiet: killing_bar
    for name in ("cli.deletion", "cli.sparsity", "cli.occlusion", "cli.study", "cli.compare"):
        __import__(name).bars = cli.common.bars
    from cli.main import app
    app(sys.argv[1:], prog_name="ersm-eval")
""")


def cli_env(**extra: str) -> dict[str, str]:
    """The child's environment: this checkout first, records written after every batch, one thread."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "ERSM_EVAL_RESUME_SECONDS": "0", "OMP_NUM_THREADS": "1", **extra}


def killed_run(args: list[str], after: int, prefix: str = "") -> subprocess.CompletedProcess:
    """``ersm-eval ARGS`` killed with SIGKILL once ``after`` images of the bars named ``prefix...`` are done."""
    env = cli_env(KILL_AFTER_IMAGES=str(after), KILL_BAR_PREFIX=prefix)
    return subprocess.run([sys.executable, "-c", _KILLER, *args], env=env, capture_output=True, text=True, timeout=600)
