"""Both deletion orders end to end: an object-mask map supports, its complement contradicts, and every
sentence names the order it speaks of."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import ersm_eval
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings

N_IMAGES, SIZE, GRID = 24, 32, 4
PATCH = SIZE // GRID


def _object_images():
    """Images whose class lives only on a square object (channel 0: +1 for class 0, −1 for class 1) over
    zero-mean noise, and the object masks [n, H, W]."""
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.3, (N_IMAGES, 3, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((N_IMAGES, SIZE, SIZE), dtype=np.float32)
    labels = np.arange(N_IMAGES) % 2
    for i in range(N_IMAGES):
        r, c = rng.integers(0, GRID - 1, 2) * PATCH
        masks[i, r:r + 2 * PATCH, c:c + 2 * PATCH] = 1.0  # 2×2 of the 16 tokens
        images[i, 0][masks[i] > 0] += 1.0 if labels[i] == 0 else -1.0
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


class _ObjectModel(nn.Module):
    """Token means of channel 0 (a frozen 8×8 average), GAP, and a linear head: logit_0 − logit_1 = 2·mean."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, PATCH, stride=PATCH, bias=False)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0 / PATCH**2
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def result():
    images, labels, masks = _object_images()
    model = ersm_eval.wrap(_ObjectModel().eval(), layer="features")
    return ersm_eval.evaluate_deletion(
        model, [(images, labels)], scores={"object": masks, "background": 1.0 - masks},
        rankings=("magnitude", "center", "random"), seeds=(0, 1), n_boot=200, mean=(0, 0, 0), std=(1, 1, 1))


def test_an_object_map_supports_and_its_complement_contradicts(result):
    summary = result.tables["deletion_summary.csv"].set_index("ranking")
    assert summary.loc["object", "verdict"] == "supports" and summary.loc["object", "sg_ci_low"] > 0
    assert summary.loc["background", "verdict"] == "contradicts" and summary.loc["background", "sg_ci_high"] < 0
    # the complement's orders are the object's swapped (up to ties), so its gain is the object's negated
    assert summary.loc["background", "sg"] == pytest.approx(-summary.loc["object", "sg"], abs=0.1)
    assert result.summary.verdicts["object"] == "supports" and result.summary.verdicts["background"] == "contradicts"
    sentence = result.summary.verdict_sentences["rankings"]["object"]
    assert sentence.startswith("_ObjectModel: object: deleting what object calls least important first (LeRF) keeps accuracy longer "
                               "than deleting what it calls most important first (MoRF): supports")


def test_sg_is_the_lerf_area_minus_the_morf_area_of_the_curves(result):
    curves = result.tables["deletion_curves.csv"]
    summary = result.tables["deletion_summary.csv"].set_index("ranking")
    for ranking in ("object", "background", "magnitude", "center"):
        assert set(curves[curves.ranking == ranking].order) == {"morf", "lerf"}
        area = {}
        for order in ("morf", "lerf"):
            rows = curves[(curves.ranking == ranking) & (curves.order == order)].sort_values("k")
            x, y = rows.fraction_removed.to_numpy(), rows.accuracy.to_numpy()
            area[order] = np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0])
        assert summary.loc[ranking, "sg"] == pytest.approx(area["lerf"] - area["morf"], abs=1e-9)


def test_no_sentence_says_above_or_below_random_without_the_order(result, tmp_path):
    from reports import build_report

    folder = tmp_path / "run"
    result.save(folder)
    html = build_report([folder], tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    texts = [html, *result.summary.verdict_sentences["rankings"].values()]
    for text in texts:
        for match in re.finditer(r"(above|below) random", text):
            window = text[max(0, match.start() - 300): match.end() + 300]
            assert re.search(r"LeRF|MoRF|least important first|most important first", window), window


def test_both_orders_come_from_one_pass_and_any_batch_size(result):
    images, labels, masks = _object_images()
    model = ersm_eval.wrap(_ObjectModel().eval(), layer="features")
    again = ersm_eval.evaluate_deletion(
        model, [(images[i:i + 5], labels[i:i + 5]) for i in range(0, N_IMAGES, 5)],
        scores={"object": masks, "background": 1.0 - masks}, rankings=("magnitude", "center", "random"),
        seeds=(0, 1), n_boot=200, mean=(0, 0, 0), std=(1, 1, 1))
    a, b = result.tables["deletion_summary.csv"], again.tables["deletion_summary.csv"]
    np.testing.assert_allclose(a["sg"].to_numpy(float), b["sg"].to_numpy(float), atol=1e-12)
    assert a["verdict"].tolist() == b["verdict"].tolist()


def test_old_ranking_names_map_to_one_order_with_a_note():
    torch.manual_seed(0)
    model = ersm_eval.wrap(_ObjectModel().eval(), layer="features")
    model.forward_features(torch.zeros(1, 3, SIZE, SIZE))  # a wrapped model learns its grid from one image
    ev = DeletionEvaluator(model, DeletionSettings(rankings=("border", "magnitude_desc", "random"), seeds=(0,)))
    assert [r.name for r in ev.rankings] == ["center", "magnitude", "random"]
    assert "'border' is now the LERF order of 'center'" in ev.notes["border"]
    assert ev.curves == [("center", "morf", -1), ("center", "lerf", -1), ("magnitude", "morf", -1),
                         ("magnitude", "lerf", -1), ("random", "random", 0)]


def test_input_level_runs_both_orders_with_the_nli_fill():
    from ersm_core.errors import ConfigError
    from ersm_eval.fills import fill_deleted

    images, labels, masks = _object_images()
    model = ersm_eval.wrap(_ObjectModel().eval(), layer="features")
    result = ersm_eval.evaluate_deletion(
        model, [(images[:4], labels[:4])], scores={"object": masks[:4]}, rankings=("object", "random"), seeds=(0,),
        steps=3, level="input", fill="nli", n_boot=50, mean=(0, 0, 0), std=(1, 1, 1))
    curves = result.tables["deletion_curves.csv"]
    assert set(curves[curves.ranking == "object"].order) == {"morf", "lerf"}
    # the slow obvious path for one image at k = 8 (half the tokens) of the MoRF order
    orders = result.records["orders"]  # [n, curves, N]: object MoRF, LeRF, random
    image, k = 1, 8
    deleted_tokens = torch.as_tensor(orders[image, 0, :k].astype(np.int64))
    token_of_pixel = (torch.arange(SIZE)[:, None] // PATCH) * GRID + torch.arange(SIZE)[None, :] // PATCH
    deleted = torch.isin(token_of_pixel, deleted_tokens)[None]
    x = fill_deleted(images[image:image + 1], deleted, "nli", (0, 0, 0), (1, 1, 1), [image], 0)
    with torch.no_grad():
        right = bool(model(x).argmax(1).item() == labels[image].item())
    row = result.records["correct"][image, 0, list(result.summary.evaluation["k_values"]).index(k)]
    assert bool(row) == right
    with pytest.raises(ConfigError, match="needs --level input"):
        DeletionSettings(fill="nli")
