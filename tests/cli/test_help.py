"""``ersm-eval --help`` and ``ersm-eval CMD --help`` import no torch, timm or matplotlib, and render cleanly."""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "matplotlib", "torchvision")
COMMANDS = ["train", "deletion", "occlusion", "sparsity", "report", "compare", "demo"]

# runs the app as the console script does, then reports which heavy modules got imported
_PROBE = """
import json, sys
from cli.main import app
try:
    app(sys.argv[1:], prog_name="ersm-eval")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args, "--help"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_nothing_heavy(command):
    result = _help(*([command] if command else []))
    assert result.returncode == 0, result.stderr[-2000:]
    *text, imported = result.stdout.rstrip().splitlines()
    assert json.loads(imported) == [], f"--help imported {imported}"
    body = "\n".join(text)
    assert "Usage: ersm-eval" in body
    assert "<bool>" not in body  # typer releases that print metavars for flags are excluded in pyproject.toml


def test_errors_module_needs_no_torch():
    probe = "import sys, ersm_core.errors, ersm_eval.schema; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_lazy_package_names_still_resolve():
    import ersm_core
    import ersm_eval

    assert ersm_core.ModelConfig.__name__ == "ModelConfig" and callable(ersm_core.load_checkpoint)
    assert callable(ersm_eval.wrap) and ersm_eval.OcclusionConfig is ersm_eval.OcclusionSettings  # the former name
    for package in (ersm_core, ersm_eval):
        assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        ersm_core.no_such_name


@pytest.mark.parametrize("name", ["pets", "food101"])
def test_missing_dataset_message_never_suggests_download(tmp_path, name):
    from ersm_core.data import ImageTransform, build_dataset
    from ersm_core.errors import DatasetError

    transform = ImageTransform(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(DatasetError) as caught:
        build_dataset(name, "test", transform, root=tmp_path)
    message = str(caught.value)
    assert "download=True" not in message
    assert "no dataset files there" in message and "https://" in message and "--data-root" in message
