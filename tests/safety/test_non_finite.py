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


def _overflowing(tmp_path):
    """Finite weights so large that every logit overflows to inf (load accepts them: each value is finite)."""
    payload = torch.load(two_class_checkpoint(tmp_path / "two.pt"), weights_only=True)
    payload["state_dict"]["head.weight"].fill_(3e38)
    torch.save(payload, tmp_path / "huge.pt")
    return tmp_path / "huge.pt"


@pytest.mark.parametrize("command,extra", [
    ("deletion", ()),
    ("deletion", ("--level", "input", "--steps", "2")),
    ("occlusion", ("--patterns", "center", "--severities", "0.5")),
    ("sparsity", ()),
])
def test_infinite_logits_stop_every_evaluator(tmp_path, command, extra):
    path = _overflowing(tmp_path)
    root = imagefolder(tmp_path / "data")  # 5 images: one chunk of 8, padded with 3 copies of the last
    with untouched(root, path):
        r = run_cli(command, path, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet", *extra)
        line = one_line_error(r, "non-finite", "logits", "(NaN or inf)")
    # the real images, each named once: no padded copies ([0, 1, 2, 3, 4, 4, 4, 4])
    assert "5 image(s)" in line and "dataset indices [0, 1, 2, 3, 4]" in line, line
    assert not (tmp_path / "o").exists()


def test_check_finite_names_unique_real_images():
    from ersm_eval.context import check_finite
    from ersm_core.errors import DatasetError

    values = torch.zeros(8, 3)
    values[1:, 0] = float("inf")  # rows 1-3 real, 4-7 padded copies of row 3
    with pytest.raises(DatasetError) as err:
        check_finite(values, torch.tensor([10, 12, 11, 11, 11, 11, 11, 11]), "logits", count=4)
    assert "2 image(s)" in str(err.value) and "dataset indices [11, 12]" in str(err.value), str(err.value)
    check_finite(values, torch.arange(8), "logits", count=1)  # only the real row is looked at


def test_deletion_names_each_padded_image_once():
    # 3 images in a chunk of 8: the 5 padding rows copy the last image, whose features are NaN
    from ersm_core.errors import DatasetError
    from ersm_core.model import ModelConfig, build_model
    from ersm_eval.deletion import DeletionEvaluator, DeletionSettings

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, image_size=32)).eval()
    with torch.no_grad():
        features = model.forward_features(torch.zeros(3, 3, 32, 32))
    features[2] = float("nan")
    evaluator = DeletionEvaluator(model, DeletionSettings(rankings=("random",), seeds=(0,), steps=2))
    with pytest.raises(DatasetError) as err:
        evaluator.update({"features": features, "label": torch.tensor([0, 1, 0]), "index": torch.tensor([7, 8, 9])})
    assert "for 1 image(s)" in str(err.value) and "dataset indices [9];" in str(err.value), str(err.value)
