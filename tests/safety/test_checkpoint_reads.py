"""A checkpoint is data, never code, and never makes the loader allocate more than its contents justify."""

from __future__ import annotations

import pytest
import torch

from ersm_core import checkpoint as checkpoint_module
from ersm_core.checkpoint import load_checkpoint
from ersm_core.errors import CheckpointError
from tests.safety.inputs import one_line_error, run_cli, two_class_checkpoint, untouched


@pytest.fixture()
def payload(tmp_path):
    return torch.load(two_class_checkpoint(tmp_path / "two.pt"), weights_only=True)


def _save(tmp_path, payload):
    torch.save(payload, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


@pytest.mark.parametrize("key,value,message", [
    ("image_size", 10**9, r"config image_size = 1000000000 is not an integer in \[8, 8192\]"),
    ("image_size", "128", r"config image_size = '128' is not an integer"),
    ("num_classes", 10**8, r"config num_classes = 100000000 is not an integer in \[2, 100000\]"),
    ("patch_size", 0, r"config patch_size = 0 is not an integer in \[1, 1024\]"),
    ("alpha", float("inf"), "config alpha = inf is not finite"),
    ("mean", [0.5] * 10**4, "config mean holds 10000 values"),
])
def test_config_values_are_range_checked_before_building(tmp_path, payload, monkeypatch, key, value, message):
    built = []
    monkeypatch.setattr(checkpoint_module, "build_model", lambda *a, **k: built.append(1))
    payload["config"][key] = value
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_save(tmp_path, payload))
    assert not built, "nothing may be built from an out-of-range config"


def test_class_names_must_fit_the_head(tmp_path, payload):
    payload["class_names"] = ["cat", "dog", "eel"]
    with pytest.raises(CheckpointError, match="it names 3 classes for a model with 2"):
        load_checkpoint(_save(tmp_path, payload))
    payload["class_names"] = ["cat", "x" * 5000]
    with pytest.raises(CheckpointError, match="a class name has 5000 characters"):
        load_checkpoint(_save(tmp_path, payload))
    payload["class_names"] = ["cat", 7]
    with pytest.raises(CheckpointError, match="class names are not a list of strings"):
        load_checkpoint(_save(tmp_path, payload))


def test_provenance_size_and_nesting_are_bounded(tmp_path, payload, monkeypatch):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    payload["provenance"] = {"deep": deep}
    with pytest.raises(CheckpointError, match="nested deeper than 32 levels"):
        load_checkpoint(_save(tmp_path, payload))
    monkeypatch.setitem(checkpoint_module.LIMITS, "provenance_bytes", 1000)
    payload["provenance"] = {"notes": "y" * 2000}
    with pytest.raises(CheckpointError, match=r"its provenance takes 20\d\d bytes as JSON \(at most 1000\)"):
        load_checkpoint(_save(tmp_path, payload))


def test_cli_message_is_one_line_and_input_untouched(tmp_path, payload):
    payload["config"]["image_size"] = 10**6
    path = _save(tmp_path, payload)
    with untouched(path):
        one_line_error(run_cli("deletion", path, "--dataset", "synthetic", "--out", tmp_path / "o", "--quiet"),
                       "config image_size = 1000000 is not an integer")
    assert not (tmp_path / "o").exists()
