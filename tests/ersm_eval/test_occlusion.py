"""Occlusion evaluator: identical occluders for every checkpoint and batch size, tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ersm_core.data import build_dataset, model_transform
from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig, build_model
from ersm_eval.context import iterate_batches
from ersm_eval.occlusion import OcclusionConfig, OcclusionEvaluator, compute_occlusion, resolve_patterns
from ersm_eval.schema import TABLES


pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG = OcclusionConfig(fills=("gray", "noise"), patterns=("random_squares", "center", "object"),
                         severities=(0.25, 0.5), seeds=(0, 1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=4, variant="ersm_full", image_size=32)).eval()


@pytest.fixture(scope="module")
def data(model):
    return build_dataset("synthetic", "test", model_transform(model), num_classes=4, n_test=5)


class Recorder(nn.Module):
    """A stand-in model that remembers every input it sees and predicts from the image mean."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m, 0 * m, 0 * m], dim=1)


def _records(model, data, batch_size, config=CONFIG, drop_mask_of=()):
    ev = OcclusionEvaluator(model, config, data.transform.mean, data.transform.std, batch_size=batch_size)
    for batch in iterate_batches(data, list(range(len(data))), batch_size=batch_size):
        if drop_mask_of:
            keep = torch.tensor([int(i) not in drop_mask_of for i in batch["index"]])
            batch = {**batch, "has_mask": batch["has_mask"] & keep}
        ev.update(batch)
    return ev.records()


def test_config_checks_and_aliases():
    cfg = OcclusionConfig(fills=("mean", "gray"), severities=(0.5, 0.1))
    assert cfg.fills == ("gray",) and cfg.severities == (0.0, 0.1, 0.5)
    with pytest.raises(ConfigError, match="valid names"):
        OcclusionConfig(fills=("pink",))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        OcclusionConfig(severities=(2.0,))
    with pytest.raises(ConfigError, match="non-negative"):
        OcclusionConfig(seeds=(-1,))


def test_mask_patterns_are_skipped_without_masks():
    active, skipped = resolve_patterns(["grid", "object", "background"], has_masks=False, dataset_name="food101")
    assert active == ["grid"] and set(skipped) == {"object", "background"}
    assert "no object masks or boxes" in skipped["object"]
    with pytest.raises(ConfigError, match="no occlusion pattern can run"):
        resolve_patterns(["object"], has_masks=False)


def test_records_do_not_depend_on_batch_size(model, data):
    a, b = _records(model, data, 2), _records(model, data, 5)
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["correct"], b["correct"])
    np.testing.assert_array_equal(a["true_prob"], b["true_prob"])  # bitwise: fixed-size forward chunks
    assert a["correct"].shape == (5, 2, 2, 3, 3)  # images, seeds, fills, patterns, severities (0 added)


def test_every_checkpoint_sees_the_same_occluded_images(data):
    seen = []
    for batch_size in (2, 5):  # two "checkpoints", different batch sizes
        recorder = Recorder()
        _records(recorder, data, batch_size)
        rows = torch.cat([x.reshape(-1, 3 * 32 * 32) for x in recorder.seen])
        seen.append(sorted({hash(r.numpy().tobytes()) for r in rows}))
    # the same inputs, bit for bit (the order of forward passes follows the batches; fixed-size
    # chunks pad with copies of their last image, so compare the distinct inputs)
    assert len(seen[0]) > 5 * 10 and seen[0] == seen[1]


def test_images_without_a_mask_are_left_out_of_mask_patterns(model, data):
    rec = _records(model, data, 5, drop_mask_of=(1, 3))
    obj = CONFIG.patterns.index("object")
    assert np.isnan(rec["correct"][[1, 3], :, :, obj]).all()
    assert np.isfinite(rec["correct"][[0, 2, 4], :, :, obj]).all()
    curves, _ = compute_occlusion({"m": rec}, CONFIG)
    assert set(curves.loc[curves["pattern"] == "object", "n_images"]) == {3}
    assert set(curves.loc[curves["pattern"] == "center", "n_images"]) == {5}


def _hand_records(correct: np.ndarray, index=None) -> dict:
    n = correct.shape[0]
    return {"index": np.arange(n) if index is None else np.asarray(index), "label": np.zeros(n, int),
            "correct": correct.astype(np.float32), "true_prob": correct.astype(np.float32) * 0.5}


def test_tables_on_hand_made_records():
    cfg = OcclusionConfig(fills=("gray",), patterns=("center",), severities=(0.0, 0.5, 1.0), seeds=(0,))
    # 4 images: all right when clean, 2 right at 0.5, none at 1.0
    correct = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]])[:, None, None, None, :]
    worse = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]])[:, None, None, None, :]
    # records come in any order: compute sorts by index
    shuffled = _hand_records(correct[::-1], index=[3, 2, 1, 0])
    curves, summary = compute_occlusion({"a": shuffled, "b": _hand_records(worse)}, cfg)
    assert list(curves.columns[: len(TABLES["occlusion.csv"])]) == TABLES["occlusion.csv"]
    assert list(summary.columns[: len(TABLES["occlusion_summary.csv"])]) == TABLES["occlusion_summary.csv"]
    a = curves[curves["checkpoint"] == "a"]
    np.testing.assert_allclose(a["accuracy"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(a["relative_robustness"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(a["mean_true_prob"], [0.5, 0.25, 0.0])
    assert (a["n"] == 4).all() and (a["ci_low"] <= a["accuracy"]).all() and (a["accuracy"] <= a["ci_high"]).all()
    row_a = summary[summary["checkpoint"] == "a"].iloc[0]
    assert row_a["auc"] == pytest.approx(0.5)  # trapezoid of (1, 0.5, 0) over [0, 1]
    assert row_a["mean_relative_robustness"] == pytest.approx(0.25)
    assert row_a["min_relative_robustness"] == 0.0
    assert pd.isna(row_a["diff_auc_to_first"])
    row_b = summary[summary["checkpoint"] == "b"].iloc[0]
    # b's curve: (0.75, 0, 0) → AUC 0.1875; paired difference to a: −0.3125
    assert row_b["diff_auc_to_first"] == pytest.approx(0.1875 - 0.5)
    assert row_b["diff_ci_low"] <= row_b["diff_auc_to_first"] <= row_b["diff_ci_high"]


def test_several_seeds_are_pooled_with_an_image_bootstrap():
    cfg = OcclusionConfig(fills=("gray",), patterns=("grid",), severities=(0.0, 0.5), seeds=(0, 1))
    correct = np.zeros((10, 2, 1, 1, 2))
    correct[:, :, 0, 0, 0] = 1
    correct[:5, 0, 0, 0, 1] = 1  # seed 0: half right at 0.5; seed 1: none
    curves, _ = compute_occlusion({"a": _hand_records(correct)}, cfg)
    row = curves[curves["severity"] == 0.5].iloc[0]
    assert row["n"] == 20 and row["n_images"] == 10 and row["n_seeds"] == 2
    assert row["accuracy"] == pytest.approx(0.25)
    assert row["ci_low"] < 0.25 < row["ci_high"]


def test_other_images_for_a_second_checkpoint_is_an_error():
    cfg = OcclusionConfig(fills=("gray",), patterns=("grid",), severities=(0.0,), seeds=(0,))
    ones = np.ones((3, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="other images"):
        compute_occlusion({"a": _hand_records(ones), "b": _hand_records(ones, index=[0, 1, 5])}, cfg)
