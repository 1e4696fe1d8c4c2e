"""Input-level insertion curves: the evaluator against the slow obvious path, a hand-built model whose
object map inserts better than random (and its complement worse), batch-size invariance, the refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import ersm_eval
from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig, build_model
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings, input_deletion_logits
from ersm_eval.fills import fill, insertion_images, token_blur_sigma
from ersm_eval.schema import TABLES

N_IMAGES, SIZE, GRID = 24, 32, 4
PATCH = SIZE // GRID


@pytest.fixture(scope="module")
def ersm():
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=5, image_size=64, variant="ersm_full")).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 3, 64, 64, generator=g), torch.randint(0, 5, (32,), generator=g)


def _run(model, x, y, batch_size, settings):
    ev = DeletionEvaluator(model, settings)
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        ev.update({"image": x[sl], "label": y[sl], "index": torch.arange(len(x))[sl] + 100})
    return ev


# -- settings ------------------------------------------------------------------------------


def test_insertion_is_refused_at_feature_level_with_the_reason():
    with pytest.raises(ConfigError, match=r"--insertion needs --level input.*repeat the LeRF deletion curve"):
        DeletionSettings(insertion=True)
    with pytest.raises(ConfigError, match="insertion must be True or False"):
        DeletionSettings(level="input", insertion="yes")
    assert DeletionSettings(level="input", insertion=np.bool_(True)).insertion is True
    assert DeletionSettings().insertion is False


def test_without_insertion_the_evaluator_writes_no_insertion_table(ersm, images):
    ev = _run(ersm, images[0][:2], images[1][:2], 2,
              DeletionSettings(level="input", steps=2, seeds=(0,), rankings=("center", "random"), n_boot=20))
    tables = ev.compute()
    assert ev.insertion_curves == [] and not any(name.startswith("insertion") for name in tables)
    assert not any(key.startswith("insertion") for key in ev.records())
    assert "insertion" not in ev.verdicts(tables) and "insertion_curves" not in ev.describe()


# -- the fast path and the slow obvious path -----------------------------------------------


def test_insertion_logits_equal_the_model_on_insertion_images(ersm, images):
    x = images[0][:3]
    g = torch.Generator().manual_seed(3)
    orders = torch.stack([torch.stack([torch.randperm(16, generator=g) for _ in range(2)]) for _ in range(3)])
    steps = np.array([0, 1, 7, 15])
    blurred = fill(x, "blur", (0, 0, 0), (1, 1, 1), sigma=token_blur_sigma((64, 64), (4, 4)))
    fast = input_deletion_logits(ersm, x, blurred, orders, steps, chunk=5, insertion=True)
    with torch.no_grad():
        for r in range(2):
            built = insertion_images(x, orders[:, r], steps, (4, 4))  # [B, S, C, H, W]
            slow = ersm(built.flatten(0, 1)).reshape(3, len(steps), -1)
            torch.testing.assert_close(fast[:, r], slow, atol=1e-5, rtol=1e-5)
        # k = 0 is the blurred image itself
        torch.testing.assert_close(fast[:, 0, 0], ersm(blurred), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("deletion_fill", ["blur", "mean", "nli"])
def test_evaluator_records_equal_the_slow_obvious_path(ersm, images, deletion_fill):
    x, y = images[0][:5], images[1][:5]
    settings = DeletionSettings(level="input", insertion=True, fill=deletion_fill, steps=4, seeds=(0, 1),
                                rankings=("energy", "cam", "center", "random"), n_boot=50, input_chunk=7)
    ev = _run(ersm, x, y, 3, settings)
    rec = ev.records()
    assert ev.insertion_curves == [("energy", "morf", -1), ("cam", "morf", -1), ("center", "morf", -1),
                                   ("random", "random", 0), ("random", "random", 1)]
    assert rec["insertion_correct"].shape == (5, 5, 4) and rec["insertion_true_prob"].shape == (5, 5, 4)
    rows = [ev.curves.index(c) for c in ev.insertion_curves]
    orders = torch.as_tensor(rec["orders"][:, rows].astype(np.int64))  # the orders the deletion run used
    correct = np.zeros((5, 5, 4), dtype=bool)
    prob = np.zeros((5, 5, 4))
    with torch.no_grad():
        for c in range(5):
            built = insertion_images(x, orders[:, c], ev.steps, tuple(ersm.grid))
            logits = ersm(built.flatten(0, 1)).reshape(5, 4, -1)
            correct[:, c] = (logits.argmax(-1) == y[:, None]).numpy()
            prob[:, c] = torch.softmax(logits, -1).gather(-1, y[:, None, None].expand(5, 4, 1))[..., 0].numpy()
    np.testing.assert_array_equal(rec["insertion_correct"], correct)
    np.testing.assert_allclose(rec["insertion_true_prob"], prob, atol=1e-5)
    # the written curves are those records' means, with the deletion steps as k
    tables = ev.compute()
    curves = tables["insertion_curves.csv"]
    assert list(curves.columns) == TABLES["insertion_curves.csv"]
    energy = curves[curves.ranking == "energy"]
    assert energy.order.unique().tolist() == ["morf"] and energy.seed.unique().tolist() == [-1]
    np.testing.assert_array_equal(energy.k.to_numpy(), ev.steps)
    np.testing.assert_allclose(energy.fraction_inserted.to_numpy(), ev.steps / 16)
    np.testing.assert_allclose(energy.accuracy.to_numpy(), correct[:, 0].mean(0))
    np.testing.assert_allclose(energy.mean_true_prob.to_numpy(), prob[:, 0].mean(0), atol=1e-6)
    random = curves[curves.ranking == "random"]
    assert random.order.unique().tolist() == ["random"] and sorted(random.seed.unique()) == [0, 1]


# -- a model that needs the object ---------------------------------------------------------


def _object_images():
    """Class 0/1 written as a ± checkerboard on a 2×2-token square object over zero-mean noise; blurring
    (σ = half a token) wipes it out. Returns images, labels and the object masks [n, H, W]."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.3, (N_IMAGES, 3, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((N_IMAGES, SIZE, SIZE), dtype=np.float32)
    labels = np.arange(N_IMAGES) % 2
    checker = ((np.arange(SIZE)[:, None] + np.arange(SIZE)[None, :]) % 2 * 2 - 1).astype(np.float32)
    for i in range(N_IMAGES):
        r, c = rng.integers(0, GRID - 1, 2) * PATCH
        masks[i, r:r + 2 * PATCH, c:c + 2 * PATCH] = 1.0
        images[i, 0] += masks[i] * checker * (1.0 if labels[i] == 0 else -1.0)
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


class _CheckerModel(nn.Module):
    """Per token the checkerboard response of channel 0, GAP, and a linear head: logit_0 − logit_1 = 2·mean."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, PATCH, stride=PATCH, bias=False)
        self.fc = nn.Linear(1, 2)
        checker = ((torch.arange(PATCH)[:, None] + torch.arange(PATCH)[None, :]) % 2 * 2 - 1).float()
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = checker / PATCH**2
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def object_result():
    x, y, masks = _object_images()
    model = ersm_eval.wrap(_CheckerModel().eval(), layer="features")
    return ersm_eval.evaluate_deletion(
        model, [(x, y)], scores={"object": masks, "background": 1.0 - masks}, rankings=("center", "random"),
        settings=DeletionSettings(level="input", insertion=True, fill="blur", seeds=(0, 1), n_boot=200),
        mean=(0, 0, 0), std=(1, 1, 1))


def test_an_object_map_inserts_faster_than_random_and_its_complement_slower(object_result):
    summary = object_result.tables["insertion_summary.csv"].set_index("ranking")
    assert list(object_result.tables["insertion_summary.csv"].columns) == TABLES["insertion_summary.csv"]
    assert summary.loc["object", "auc"] > summary.loc["random", "auc"] > summary.loc["background", "auc"]
    assert summary.loc["object", "verdict"] == "supports" and summary.loc["object", "auc_diff_ci_low"] > 0
    assert summary.loc["background", "verdict"] == "contradicts" and summary.loc["background", "auc_diff_ci_high"] < 0
    assert summary.loc["object", "order"] == "morf" and summary.loc["random", "order"] == "random"
    assert summary.loc["random", "verdict"] == "" or pd.isna(summary.loc["random", "verdict"])
    assert pd.isna(summary.loc["random", "auc_diff"]) and summary.loc["random", "n_seeds"] == 2
    # the blurred image carries no class: about half right; every object token back: all right
    curves = object_result.tables["insertion_curves.csv"]
    obj = curves[curves.ranking == "object"].set_index("k")
    assert obj.loc[0, "accuracy"] < 0.8 and obj.loc[4, "accuracy"] == 1.0
    assert summary.loc["object", "acc_k0"] == obj.loc[0, "accuracy"]
    # the summary records the verdicts and the sentences, naming the order
    assert object_result.summary.evaluation["insertion_verdicts"] == {
        "center": summary.loc["center", "verdict"], "object": "supports", "background": "contradicts"}
    sentence = object_result.summary.verdict_sentences["insertion"]["object"]
    assert "inserting what object calls most important first (MoRF) recovers accuracy faster than inserting in " \
           "random order: supports (ΔAUC +" in sentence
    assert "recovers accuracy more slowly" in object_result.summary.verdict_sentences["insertion"]["background"]
    # deletion's own tables and verdicts are still there
    assert object_result.summary.verdicts["object"] == "supports"


def test_auc_diff_is_the_difference_of_the_written_curves_areas(object_result):
    from ersm_eval.stats import normalized_auc

    curves = object_result.tables["insertion_curves.csv"]
    summary = object_result.tables["insertion_summary.csv"].set_index("ranking")

    def area(rows):
        mean = rows.groupby("k")[["fraction_inserted", "accuracy"]].mean()
        return float(normalized_auc(mean.fraction_inserted.to_numpy(), mean.accuracy.to_numpy()))

    random = area(curves[curves.ranking == "random"])
    assert summary.loc["random", "auc"] == pytest.approx(random, abs=1e-12)
    for name in ("object", "background", "center"):
        own = area(curves[curves.ranking == name])
        assert summary.loc[name, "auc"] == pytest.approx(own, abs=1e-12)
        assert summary.loc[name, "auc_diff"] == pytest.approx(own - random, abs=1e-9)


# -- invariance --------------------------------------------------------------------------


def test_batch_size_does_not_change_the_insertion_tables(ersm, images):
    settings = DeletionSettings(level="input", insertion=True, steps=3, seeds=(0, 1), rankings=("energy", "random"),
                                label="m", n_boot=100)
    x, y = images[0][:12], images[1][:12]  # 32 is more than the images: one batch
    tables = [_run(ersm, x, y, bs, settings).compute() for bs in (1, 7, 32)]
    for name in ("insertion_curves.csv", "insertion_summary.csv"):
        a, b, c = (t[name] for t in tables)
        for other in (b, c):
            assert list(a.columns) == list(other.columns)
            for col in a.columns:  # probabilities may differ in the last float32 digits (CPU conv backends)
                if col == "mean_true_prob" or col.startswith("prob_auc"):
                    np.testing.assert_allclose(a[col].to_numpy(float), other[col].to_numpy(float), rtol=1e-5, atol=1e-7)
                else:
                    pd.testing.assert_series_equal(a[col], other[col], check_exact=True, obj=f"{name}:{col}")
