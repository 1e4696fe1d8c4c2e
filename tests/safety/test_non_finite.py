"""Any NaN or inf weight stops the run at load, with a message naming the parameter."""

from __future__ import annotations

import pytest
import torch

from ersm_core.checkpoint import load_checkpoint
from ersm_core.errors import CheckpointError
from tests.safety.inputs import imagefolder, one_line_error, run_cli, two_class_checkpoint, untouched


def _poisoned(tmp_path, name: str, value: float):
    payload = torch.load(two_class_checkpoint(tmp_path / "two.pt"), weights_only=True)
    tensor = payload["state_dict"][name]
    tensor.view(-1)[0] = value
    torch.save(payload, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("name,value", [("head.weight", float("nan")), ("head.bias", float("inf")),
                                        ("spatial.template.weight", float("-inf")), ("spatial.bias", float("nan"))])
def test_non_finite_weight_is_named_at_load(tmp_path, name, value):
    path = _poisoned(tmp_path, name, value)
    with pytest.raises(CheckpointError, match=rf"non-finite weights \(NaN or inf\) in '{name}' \(1 of \d+ values\)"):
        load_checkpoint(path)


def test_cli_stops_before_any_output(tmp_path):
    path = _poisoned(tmp_path, "head.weight", float("nan"))
    root = imagefolder(tmp_path / "data")
    with untouched(root, path):
        for command in ("deletion", "occlusion", "sparsity"):
            r = run_cli(command, path, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                        "--no-report", "--quiet")
            one_line_error(r, "'head.weight'", "non-finite")
    assert not (tmp_path / "o").exists()
