"""Orders in both directions: MoRF/LeRF from importance scores, symmetric gain, the verdict rule and
the feature-level logits of both orders, against hand computations on tiny arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ersm_core.model import ModelConfig, build_model
from ersm_eval.deletion import deletion_logits
from ersm_eval.orders import (
    IMPORTANCE,
    GainSummary,
    both_order_logits,
    feature_insertion_logits,
    importance_scores,
    order_areas,
    orders_from_scores,
    random_symmetric_gain,
    sg_minus_center,
    summarize_gain,
    symmetric_gain,
)
from ersm_eval.rankings import RANKINGS, RankingInputs, border_order, center_order
from ersm_eval.stats import bootstrap_weights
from ersm_eval.verdicts import beats_center, order_sentence, order_verdict, position_gain_sentence

pytestmark = pytest.mark.usefixtures("one_thread")


# -- orders ---------------------------------------------------------------------------------


def test_orders_break_ties_by_lower_index_in_both_directions():
    morf, lerf = orders_from_scores(torch.tensor([[2.0, 1.0, 2.0, 0.0, 1.0]]))
    # LeRF: 0 (token 3), 1 (tokens 1, 4), 2 (tokens 0, 2); MoRF: 2 (0, 2), 1 (1, 4), 0 (3)
    assert lerf.tolist() == [[3, 1, 4, 0, 2]]
    assert morf.tolist() == [[0, 2, 1, 4, 3]]
    assert morf.tolist() != lerf.flip(-1).tolist()  # a flip would put the tied higher index first


def test_orders_of_all_equal_scores_one_image_and_signed_zero():
    morf, lerf = orders_from_scores(np.full((1, 4), 5.0))
    assert morf.tolist() == lerf.tolist() == [[0, 1, 2, 3]]
    morf, lerf = orders_from_scores(torch.tensor([[0.0, -0.0, 1.0]]))  # -0.0 == 0.0: a tie
    assert lerf.tolist() == [[0, 1, 2]] and morf.tolist() == [[2, 0, 1]]
    morf, lerf = orders_from_scores(torch.tensor([3, 1, 2]))  # integers, one image without a batch axis
    assert morf.tolist() == [0, 2, 1] and lerf.tolist() == [1, 2, 0]


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        orders_from_scores(torch.tensor([[1.0, float("nan")]]))


def test_importance_scores_by_hand():
    scores = {"energy": torch.tensor([[0.5, 2.0]]), "unary": torch.tensor([[1.0, -1.0]]),
              "magnitude": torch.tensor([[3.0, 4.0]]), "cam": torch.tensor([[-1.0, 2.0]]),
              "saliency": torch.tensor([[0.2, 0.1]])}
    assert importance_scores("energy", scores).tolist() == [[-0.5, -2.0]]
    assert importance_scores("unary", scores).tolist() == [[-1.0, 1.0]]
    assert importance_scores("magnitude", scores).tolist() == [[3.0, 4.0]]
    assert importance_scores("cam", scores).tolist() == [[-1.0, 2.0]]
    assert torch.allclose(importance_scores("saliency", scores), torch.tensor([[0.2, 0.1]]))  # external: its value
    # center on a 3×3 grid: (2·distance)² is 8 at corners, 4 on edges, 0 in the middle
    center = importance_scores("center", {}, grid=(3, 3), batch=2)
    assert center.shape == (2, 9) and center[1].tolist() == [-8, -4, -8, -4, 0, -4, -8, -4, -8]
    with pytest.raises(ValueError, match="random has no importance"):
        importance_scores("random", scores)
    with pytest.raises(ValueError, match="no importance score for 'pink'"):
        importance_scores("pink", scores)
    with pytest.raises(ValueError, match="needs the score 'energy'"):
        importance_scores("energy", {"magnitude": scores["magnitude"]})


def test_registered_rankings_carry_the_declared_importance_scores():
    torch.manual_seed(0)
    n, grid = 3, (4, 4)
    scores = {k: torch.randn(n, 16) for k in ("energy", "unary", "magnitude")}
    scores["energy"][:, :4] = 1.0  # ties
    cam = torch.randn(n, 16)
    inputs = RankingInputs(scores=scores, indices=np.arange(n), n_tokens=16, cam=cam, grid=grid)
    for name in ("energy", "unary", "magnitude", "cam", "center"):
        morf, lerf = orders_from_scores(importance_scores(name, {**scores, "cam": cam}, grid=grid, batch=n))
        got_morf, got_lerf = orders_from_scores(RANKINGS.get(name).importance(inputs))
        assert torch.equal(got_morf, morf) and torch.equal(got_lerf, lerf), name
    for other in ((3, 5), (2, 7), (1, 4)):  # non-square grids: center is MoRF of −distance
        morf, _ = orders_from_scores(importance_scores("center", {}, grid=other, batch=1))
        assert morf[0].tolist() == center_order(other).tolist(), other
    # border reverses center, so within a ring of equal distance the higher index comes first
    morf, lerf = orders_from_scores(importance_scores("center", {}, grid=grid, batch=1))
    assert sorted(lerf[0, :4].tolist()) == sorted(border_order(grid)[:4].tolist()) == [0, 3, 12, 15]
    assert lerf[0, :4].tolist() == [0, 3, 12, 15] and border_order(grid)[:4].tolist() == [15, 12, 3, 0]


# -- areas and the symmetric gain ------------------------------------------------------------


def test_symmetric_gain_by_hand():
    fraction = np.array([0.0, 0.5, 1.0])
    lerf = np.array([[1, 1, 0], [1, 0, 0]], dtype=float)
    morf = np.array([[1, 0, 0], [1, 1, 1]], dtype=float)
    # image 0: LeRF (1+1)/2·½ + (1+0)/2·½ = 0.75, MoRF 0.25; image 1: LeRF 0.25, MoRF 1
    np.testing.assert_allclose(order_areas(fraction, lerf), [0.75, 0.25])
    np.testing.assert_allclose(symmetric_gain(fraction, lerf, morf), [0.5, -0.75])
    np.testing.assert_allclose(symmetric_gain(fraction, lerf[:1], morf[:1]), [0.5])  # one image
    with pytest.raises(ValueError, match="differ in shape"):
        symmetric_gain(fraction, lerf, morf[:1])


def test_gain_summary_interval_and_p_value():
    same = summarize_gain(np.array([0.5, 0.5, 0.5]), n_boot=200)
    assert (same.mean, same.ci_low, same.ci_high, same.n_images) == (0.5, 0.5, 0.5, 3)
    assert same.p_value == pytest.approx(2 / 201)  # no resample on the far side of 0
    rand = summarize_gain(random_symmetric_gain(4))
    assert (rand.mean, rand.ci_low, rand.ci_high, rand.p_value) == (0.0, 0.0, 0.0, 1.0)
    mixed = summarize_gain(np.array([0.5, -0.75]), weights=bootstrap_weights(2, 500, 0))
    assert mixed.mean == pytest.approx(-0.125)
    # resampled means ∈ {−0.75, −0.125, 0.5}
    assert mixed.ci_low == pytest.approx(-0.75) and mixed.ci_high == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        summarize_gain(np.array([0.1, np.nan]))


def test_sg_minus_center_is_paired():
    sg, center = np.array([0.5, 0.2, 0.3]), np.array([0.1, 0.3, 0.2])
    diff = sg_minus_center(sg, center, weights=bootstrap_weights(3, 500, 1))
    assert diff.mean == pytest.approx((0.4 - 0.1 + 0.1) / 3)
    assert diff.ci_low == pytest.approx(-0.1) and diff.ci_high == pytest.approx(0.4)
    assert not beats_center(diff.ci_low)
    shifted = sg_minus_center(center + 0.2, center, n_boot=100)  # the same gain on every image
    assert shifted.ci_low == pytest.approx(0.2) and beats_center(shifted.ci_low)
    with pytest.raises(ValueError, match="different images"):
        sg_minus_center(sg, center[:2])


# -- the rule and its words --------------------------------------------------------------------


@pytest.mark.parametrize("low, high, chance, verdict", [
    (0.01, 0.2, False, "supports"),
    (-0.3, -0.02, False, "contradicts"),
    (0.0, 0.2, False, "indistinguishable"),  # touching 0 is not above it
    (-0.1, 0.1, False, "indistinguishable"),
    (float("nan"), float("nan"), False, "indistinguishable"),
    (0.1, 0.2, True, "not_testable"),
])
def test_order_verdict(low, high, chance, verdict):
    assert order_verdict(low, high, chance) == verdict


def test_sentences_say_the_direction_and_the_verdict():
    gain = GainSummary(0.12, 0.05, 0.2, 0.002, 40)
    text = order_sentence("energy", gain, at_chance=False, label="ersm")
    assert text.startswith("ersm: energy: deleting what energy calls least important first (LeRF) keeps accuracy "
                           "longer than deleting what it calls most important first (MoRF): supports "
                           "(symmetric gain +0.120")
    assert "95% CI +0.050 to +0.200" in text and "p = 0.002" in text
    worse = order_sentence("cam", GainSummary(-0.1, -0.2, -0.01, 0.0004, 40), at_chance=False)
    assert "loses accuracy faster" in worse and worse.endswith("p < 0.001), 40 images).") and ": contradicts" in worse
    assert ": indistinguishable" in order_sentence("unary", GainSummary(0.0, -0.1, 0.1, 0.9, 10), False)
    assert "not_testable" in order_sentence("energy", gain, at_chance=True)
    assert "0 by construction" in order_sentence("random", None, at_chance=False)
    assert "indistinguishable" in order_sentence("energy", None, at_chance=False)  # no interval: cannot tell
    above = position_gain_sentence("energy", GainSummary(0.1, 0.02, 0.2, 0.01, 40))
    assert "carries more than position" in above and "not shown" not in above
    assert "is not shown to carry more than position" in position_gain_sentence(
        "energy", GainSummary(0.1, -0.02, 0.2, 0.2, 40))


# -- both orders from one pass ------------------------------------------------------------------


def _model(patch: int = 2):
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=3, image_size=64, variant="baseline", patch_size=patch)).eval()


def _slow_deletion(model, fmap, order, k, patch, insert=False):
    """Zero the deleted tokens' positions, pool by the mean over the kept ones, run the head."""
    grid_w = fmap.shape[2] // patch  # fmap: one image's map [C, H, W]
    keep = torch.zeros(fmap.shape[1:]) if insert else torch.ones(fmap.shape[1:])
    for t in (order[:k].tolist()):
        r, c = divmod(t, grid_w)
        keep[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = 1.0 if insert else 0.0
    pooled = (fmap.double() * keep.double()).sum((1, 2)) / keep.double().sum()
    return model.forward_head(pooled.float()[None])[0]


def test_both_order_logits_equal_two_single_order_calls_and_the_slow_loop():
    model = _model(patch=2)  # 64 px → 4×4 map, 2×2 patches → 4 tokens
    torch.manual_seed(1)
    fmap = torch.rand(2, 256, 4, 4)
    scores = torch.tensor([[0.3, 0.1, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0]])  # ties, and all equal
    steps = np.array([0, 1, 2, 3])
    morf_l, lerf_l = both_order_logits(model, fmap, scores, steps)
    morf, lerf = orders_from_scores(scores)
    torch.testing.assert_close(morf_l, deletion_logits(model, fmap, morf[:, None], steps)[:, 0])
    torch.testing.assert_close(lerf_l, deletion_logits(model, fmap, lerf[:, None], steps)[:, 0])
    for b in range(2):
        for j, k in enumerate(steps):
            torch.testing.assert_close(morf_l[b, j], _slow_deletion(model, fmap[b], morf[b], k, 2), atol=1e-5, rtol=0)
            torch.testing.assert_close(lerf_l[b, j], _slow_deletion(model, fmap[b], lerf[b], k, 2), atol=1e-5, rtol=0)
    # several rankings at once: [B, R, N] → [B, R, S, K]
    both = both_order_logits(model, fmap, torch.stack([scores, -scores], 1), steps)
    assert both[0].shape == (2, 2, 4, 3)
    torch.testing.assert_close(both[0][:, 0], morf_l)
    torch.testing.assert_close(both[1][:, 1], deletion_logits(model, fmap, orders_from_scores(-scores)[1][:, None],
                                                              steps)[:, 0])


def test_both_order_logits_with_a_non_linear_head():
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 4))
    model = SimpleNamespace(config=SimpleNamespace(patch_size=1), head_is_linear=False, head=mlp, forward_head=mlp)
    fmap = torch.rand(1, 6, 3, 3)
    scores = torch.randn(1, 9)
    morf_l, lerf_l = both_order_logits(model, fmap, scores, np.arange(9))
    morf, lerf = orders_from_scores(scores)
    for k in range(9):
        torch.testing.assert_close(morf_l[0, k], _slow_deletion(model, fmap[0], morf[0], k, 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(lerf_l[0, k], _slow_deletion(model, fmap[0], lerf[0], k, 1), atol=1e-5, rtol=0)


def test_feature_insertion_in_morf_order_is_lerf_deletion_at_n_minus_k():
    model = _model(patch=1)  # 16 tokens
    torch.manual_seed(3)
    fmap = torch.rand(2, 256, 4, 4)
    scores = torch.randn(2, 16)  # distinct
    morf, lerf = orders_from_scores(scores)
    k = np.array([1, 4, 9, 16])
    inserted = feature_insertion_logits(model, fmap, morf[:, None], k)[:, 0]
    for b in range(2):
        for j, kk in enumerate(k):
            torch.testing.assert_close(inserted[b, j], _slow_deletion(model, fmap[b], morf[b], kk, 1, insert=True),
                                       atol=1e-5, rtol=0)
    deleted = deletion_logits(model, fmap, lerf[:, None], 16 - k[::-1].copy())[:, 0].flip(1)  # at N − k
    torch.testing.assert_close(inserted, deleted, atol=1e-5, rtol=0)
    # a tie straddling the cut: MoRF keeps the tie's lower index, LeRF deletes it first
    tied = torch.tensor([[5.0, 1.0, 1.0] + [0.0] * 13])
    morf_t, lerf_t = orders_from_scores(tied)
    assert set(morf_t[0, :2].tolist()) == {0, 1} and set(lerf_t[0, 14:].tolist()) == {0, 2}
    tie_insert = feature_insertion_logits(model, fmap[:1], morf_t[:, None], np.array([1, 2, 3]))[0, 0]
    tie_delete = deletion_logits(model, fmap[:1], lerf_t[:, None], np.array([13, 14, 15]))[0, 0].flip(0)
    torch.testing.assert_close(tie_insert[[0, 2]], tie_delete[[0, 2]], atol=1e-5, rtol=0)  # cuts outside the tie
    assert not torch.allclose(tie_insert[1], tie_delete[1], atol=1e-4)  # the cut inside the tie
    with pytest.raises(ValueError, match="1..16"):
        feature_insertion_logits(model, fmap, morf[:, None], np.array([0, 3]))
