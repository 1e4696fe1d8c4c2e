"""The conventional ways to start the tool: ``python -m ersm_eval`` and ``ersm-eval --version``."""

import json
import os
import subprocess
import sys

import pytest

from ersm_core.versions import versions

HEAVY = ("torch", "timm", "matplotlib", "torchvision")

# runs `python -m ersm_eval ARGS` in-process (runpy, as -m does), then reports which heavy modules got imported
_PROBE = """
import json, runpy, sys
sys.argv = ["ersm_eval", *sys.argv[1:]]
try:
    runpy.run_module("ersm_eval", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ersm_eval", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160"})


def _probe(*args: str) -> tuple[str, dict]:
    result = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "160"})
    *text, last = result.stdout.rstrip().splitlines()
    return "\n".join(text), json.loads(last)


def test_python_dash_m_ersm_eval_is_the_cli():
    result = _module("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage: ersm-eval [OPTIONS] COMMAND" in result.stdout  # named as the console script, not __main__.py
    for command in ("train", "deletion", "occlusion", "sparsity", "report", "compare", "demo"):
        assert command in result.stdout
    sub = _module("deletion", "--help")
    assert sub.returncode == 0 and "Usage: ersm-eval deletion" in sub.stdout
    # a usage error is the CLI's one-line refusal, with a non-zero exit
    bad = _module("no-such-command")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "No such command" in bad.stderr


def test_version_prints_the_installed_version_without_torch():
    expected = f"ersm-eval {versions()['ersm_eval']}"
    text, report = _probe("--version")
    assert report == {"code": 0, "heavy": []}
    assert text.strip() == expected
    assert _module("--version").stdout.strip() == expected


def test_version_is_listed_in_the_help():
    text, report = _probe("--help")
    assert report["code"] == 0 and report["heavy"] == []
    assert "--version" in text and "Print the version and exit." in text


def _console_script() -> str | None:
    """The ``ersm-eval`` script installed next to this Python, if the project is installed there."""
    script = os.path.join(os.path.dirname(sys.executable), "ersm-eval")
    return script if os.access(script, os.X_OK) else None


def test_the_console_script_and_torchruns_no_python_form():
    script = _console_script()
    if script is None:
        pytest.skip("ersm-eval is not installed next to this Python")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    expected = f"ersm-eval {versions()['ersm_eval']}"
    direct = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120, env=env)
    assert direct.returncode == 0 and direct.stdout.strip() == expected
    # the README's launch form: torchrun starts the console script itself
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    launched = subprocess.run([torchrun, "--no-python", "--nproc-per-node", "1", "ersm-eval", "--version"],
                              capture_output=True, text=True, timeout=300, env=env)
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert expected in launched.stdout
