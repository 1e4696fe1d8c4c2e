"""Two-level statistics: mean ± std over seeds, the seeds-then-images bootstrap, group differences."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ersm_eval.stats import bootstrap_mean_ci
from ersm_eval.studies.stats import TwoLevelBootstrap, group_difference, group_estimate, seed_values


def _members(means, n=400, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([m + spread * rng.standard_normal(n) for m in means])


def test_mean_and_std_over_seeds_by_hand():
    values = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=float)  # seed means 0.75, 0.25, 1.0
    est = group_estimate(values, "g", n_boot=50)
    assert est.seed_means == (0.75, 0.25, 1.0)
    assert abs(est.mean - 2 / 3) < 1e-9
    hand_std = math.sqrt(((0.75 - 2 / 3) ** 2 + (0.25 - 2 / 3) ** 2 + (1.0 - 2 / 3) ** 2) / 2)  # ddof = 1
    assert abs(est.std - hand_std) < 1e-9
    assert est.n_seeds == 3 and est.n_images == 4 and est.training_variance_measured


def test_vectorized_replicates_equal_the_obvious_loop():
    values = _members([0.1, 0.4, 0.3], n=7)
    boot = TwoLevelBootstrap(7, n_boot=40, seed=3)
    fast = boot.replicates(values, "g")
    counts = boot.seed_weights(3, "g").astype(int)
    images = boot.image_weights.astype(int)
    slow = []
    for b in range(40):
        drawn_seeds = np.repeat(np.arange(3), counts[b])  # seeds drawn with replacement
        drawn_images = np.repeat(np.arange(7), images[b])  # images drawn with replacement, the same for every seed
        assert len(drawn_seeds) == 3 and len(drawn_images) == 7
        slow.append(np.mean([values[s][drawn_images].mean() for s in drawn_seeds]))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert counts.sum(1).tolist() == [3] * 40 and (counts != 1).any()  # seeds really are resampled


def test_group_interval_is_wider_than_its_members_when_seeds_differ():
    est = group_estimate(_members([0.2, 0.5, 0.8]), "g")
    member_widths = np.subtract(est.seed_ci_high, est.seed_ci_low)
    assert est.ci_high - est.ci_low > member_widths.max()
    assert est.ci_low < 0.3 and est.ci_high > 0.7  # covers the spread of the seeds, not just of the images


def test_identical_members_give_the_image_level_interval():
    one = _members([0.5], n=300)[0]
    est = group_estimate(np.stack([one, one, one]), "g")
    assert est.std == 0.0
    assert est.ci_low == pytest.approx(est.seed_ci_low[0], abs=1e-12)
    assert est.ci_high == pytest.approx(est.seed_ci_high[0], abs=1e-12)


def test_one_seed_gives_the_image_level_interval_and_says_so():
    values = _members([0.4], n=250)
    est = group_estimate(values, "solo", n_boot=1000, seed=5)
    assert est.n_seeds == 1 and not est.training_variance_measured
    assert math.isnan(est.std)
    low, high = bootstrap_mean_ci(values[0], n_boot=1000, seed=5)  # the image-level interval of the project's stats
    assert (est.ci_low, est.ci_high) == pytest.approx((float(low), float(high)), abs=1e-12)
    assert (est.ci_low, est.ci_high) == (est.seed_ci_low[0], est.seed_ci_high[0])


def test_deterministic_and_independent_of_other_groups():
    values = _members([0.2, 0.6])
    assert group_estimate(values, "g", seed=1) == group_estimate(values, "g", seed=1)
    assert group_estimate(values, "g", seed=1).ci_low != group_estimate(values, "g", seed=2).ci_low
    boot = TwoLevelBootstrap(values.shape[1], seed=1)
    boot.estimate(_members([0.9, 0.1], seed=4), "other")  # another group drawn first changes nothing
    assert boot.estimate(values, "g") == group_estimate(values, "g", seed=1)


def test_difference_of_identical_groups_is_centred_on_zero():
    values = _members([0.3, 0.5, 0.4])
    d = group_difference(values, values.copy(), "a", "b")
    assert d.diff == 0.0
    assert d.ci_low < 0 < d.ci_high
    assert abs(d.ci_low + d.ci_high) / 2 < 0.1 * (d.ci_high - d.ci_low)
    assert (d.n_seeds_a, d.n_seeds_b) == (3, 3)


def test_difference_pairs_the_images():
    rng = np.random.default_rng(1)
    difficulty = rng.standard_normal(500)  # what the images share across models
    a = np.stack([difficulty + 0.10 + 0.01 * rng.standard_normal(500) for _ in range(3)])
    b = np.stack([difficulty + 0.01 * rng.standard_normal(500) for _ in range(3)])
    d = group_difference(a, b, "a", "b")
    assert d.diff == pytest.approx(0.10, abs=0.005)
    assert 0 < d.ci_low < d.ci_high
    alone = group_estimate(a, "a")
    assert d.ci_high - d.ci_low < 0.2 * (alone.ci_high - alone.ci_low)  # image difficulty cancels


def test_difference_with_more_seed_spread_is_wider():
    narrow = group_difference(_members([0.5, 0.5, 0.5]), _members([0.4, 0.4, 0.4], seed=1), "a", "b")
    wide = group_difference(_members([0.3, 0.7, 0.5]), _members([0.4, 0.4, 0.4], seed=1), "a", "b")
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


def test_fast_enough_for_a_study():
    values = [_members([0.5] * 3, n=1000, seed=s) for s in (0, 1)]
    started = time.perf_counter()
    boot = TwoLevelBootstrap(1000, n_boot=2000, seed=0)
    boot.estimate(values[0], "a"), boot.estimate(values[1], "b")
    boot.difference(values[0], values[1], "a", "b")
    assert time.perf_counter() - started < 2.0


def test_bad_values_are_refused_with_one_message():
    with pytest.raises(ValueError, match="2 of 6 per-image values are NaN or infinite"):
        seed_values([[1.0, np.nan, 0.0], [np.inf, 1.0, 0.0]], "g")
    with pytest.raises(ValueError, match="at least one of each"):
        seed_values(np.zeros((0, 3)))
    boot = TwoLevelBootstrap(5, n_boot=10)
    with pytest.raises(ValueError, match="4 per-image values but the study has 5 images"):
        boot.estimate(np.zeros((2, 4)), "g")
    with pytest.raises(ValueError, match="two differently named groups"):
        boot.difference(np.zeros((1, 5)), np.zeros((1, 5)), "g", "g")
    with pytest.raises(ValueError, match="n_boot must be at least 2"):
        TwoLevelBootstrap(5, n_boot=1)


def test_group_interval_is_never_narrower_than_a_member_even_when_seeds_agree():
    rng = np.random.default_rng(3)
    shared = rng.normal(0.0, 1.0, 400)  # what the images do to every seed alike
    values = np.stack([shared + rng.normal(0.0, 1.0, 400) for _ in range(3)])  # seeds agree on average
    estimate = group_estimate(values, "g", n_boot=500, seed=0)
    widths = np.asarray(estimate.seed_ci_high) - np.asarray(estimate.seed_ci_low)
    assert estimate.ci_high - estimate.ci_low >= widths.max() - 1e-12
    below = max(m - lo for m, lo in zip(estimate.seed_means, estimate.seed_ci_low))
    assert estimate.ci_low <= estimate.mean - below + 1e-12
