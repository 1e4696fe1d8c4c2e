"""Statistics: Wilson intervals, bootstrap intervals and paired tests, exact McNemar, normalized AUC."""

import numpy as np
import pytest

from ersm_eval.stats import (
    bootstrap_mean_ci, bootstrap_weights, mcnemar_exact, normalized_auc, paired_bootstrap_diff,
    paired_bootstrap_test, trapezoid, wilson_interval,
)


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4901624, abs=1e-6) and high == pytest.approx(0.9433178, abs=1e-6)
    low, high = wilson_interval(np.array([0, 10]), 10)
    assert low[0] == 0.0 and high[1] == pytest.approx(1.0)


def test_bootstrap_weights_resample_n_images():
    w = bootstrap_weights(7, n_boot=50, seed=0)
    assert w.shape == (50, 7) and np.all(w.sum(1) == 7)
    assert np.array_equal(w, bootstrap_weights(7, n_boot=50, seed=0))


def test_bootstrap_mean_ci_covers_the_mean():
    values = np.random.default_rng(0).normal(1.0, 1.0, size=(400, 2))
    low, high = bootstrap_mean_ci(values)
    assert np.all(low < values.mean(0)) and np.all(values.mean(0) < high)


def test_mcnemar_exact():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 0, 1], bool)
    stat, p = mcnemar_exact(a[:, None], b[:, None])
    assert stat[0] == 6 and p[0] == pytest.approx(2 * 0.5**6)
    stat, p = mcnemar_exact(a[:, None], a[:, None])
    assert stat[0] == 0 and p[0] == 1.0


def test_normalized_auc():
    assert normalized_auc([0, 0.5, 1.0], [0.7, 0.7, 0.7]) == pytest.approx(0.7)
    assert normalized_auc([0, 1.0], [1.0, 0.0]) == pytest.approx(0.5)


def test_paired_bootstrap_test_zero_differences():
    mean, low, high, se, p = paired_bootstrap_test(np.zeros((20, 3)))
    assert np.all(mean == 0) and np.all(low == 0) and np.all(high == 0) and np.all(p == 1.0)


def test_paired_bootstrap_test_clear_difference():
    rng = np.random.default_rng(0)
    a = rng.random((300, 2)) < 0.8
    b = rng.random((300, 2)) < 0.3
    diff = a.astype(float) - b
    mean, low, high, se, p = paired_bootstrap_test(diff, n_boot=500)
    assert np.all(low > 0) and np.all(p > 0) and np.all(p <= 2 / 501 + 1e-12)
    assert np.allclose(mean, diff.mean(0)) and np.all(se > 0)
    # same resamples as paired_bootstrap_diff with the same seed
    ref = paired_bootstrap_diff(a.astype(float), b.astype(float), n_boot=500)
    assert np.allclose(low, ref[1]) and np.allclose(high, ref[2])
    # shared weights give the same answer; a different seed a different one
    w = bootstrap_weights(300, 500, 0)
    assert np.allclose(paired_bootstrap_test(diff, w)[1], low)


def test_paired_bootstrap_test_vector_input_and_no_images():
    mean, low, high, se, p = paired_bootstrap_test(np.array([1.0, -1.0, 0.0, 0.0]), n_boot=100)
    assert mean.shape == (1,) and 0 < p[0] <= 1
    mean, *_ = paired_bootstrap_test(np.zeros((0, 2)))
    assert np.all(np.isnan(mean))


def test_normalized_auc_of_many_curves_and_its_linearity():
    x = np.array([0.0, 0.25, 0.5, 1.0])
    y = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.5, 0.5, 0.0]])
    # by hand: (0.25·1 + 0.25·0.5 + 0.5·0) / 1 and (0.25·0.75 + 0.25·0.5 + 0.5·0.25) / 1
    assert normalized_auc(x, y) == pytest.approx([0.375, 0.4375])
    assert isinstance(normalized_auc(x, y[0]), float)
    # the mean of per-curve areas is the area of the mean curve
    assert normalized_auc(x, y).mean() == pytest.approx(normalized_auc(x, y.mean(0)), abs=1e-15)
    with pytest.raises(ValueError, match="points"):
        normalized_auc(x[:3], y)


def test_one_bootstrap_p_value_formula():
    # paired_bootstrap_diff is a thin caller of paired_bootstrap_test: same mean, interval and p
    rng = np.random.default_rng(3)
    a, b = rng.random((40, 3)), rng.random((40, 3)) + np.array([0.0, 0.1, 0.4])
    mean, low, high, p = paired_bootstrap_diff(a, b, n_boot=300, seed=2)
    ref = paired_bootstrap_test(a - b, n_boot=300, seed=2)
    for got, want in zip((mean, low, high, p), (ref[0], ref[1], ref[2], ref[4])):
        assert np.array_equal(got, want)
    # the formula by hand: 2 · (1 + resamples on the far side of 0) / (n_boot + 1), capped at 1
    means = bootstrap_weights(40, 300, 2) @ (a - b) / 40
    far = np.minimum((means <= 0).sum(0), (means >= 0).sum(0))
    assert p == pytest.approx(np.minimum(1.0, 2 * (far + 1) / 301))
    # shapes beyond 2-D and a single column keep their shape
    assert paired_bootstrap_diff(a[:, :, None], b[:, :, None], n_boot=50)[3].shape == (3, 1)
    assert paired_bootstrap_diff(a[:, 0], b[:, 0], n_boot=50)[0].shape == ()


def test_percentile_interval_by_hand():
    from ersm_eval.stats import percentile_interval

    samples = np.arange(1.0, 42.0)  # 41 values: the 2.5% and 97.5% quantiles are 1 + 0.025·40 = 2 and 40
    low, high = percentile_interval(samples)
    assert (low, high) == pytest.approx((2.0, 40.0))
    with_nan = np.append(samples, np.nan)
    assert np.isnan(percentile_interval(with_nan)[0])
    assert percentile_interval(with_nan, ignore_nan=True) == pytest.approx((2.0, 40.0))
    low, high = percentile_interval(np.stack([samples, 2 * samples], 1), level=0.5)  # quartiles per column
    np.testing.assert_allclose(low, [11.0, 22.0])
    np.testing.assert_allclose(high, [31.0, 62.0])


def test_bootstrap_subgroup_means_by_hand():
    from ersm_eval.stats import bootstrap_subgroup_means, bootstrap_weights

    values = np.array([1.0, 2.0, 4.0, 8.0])
    right = np.array([True, False, True, False])
    boot = bootstrap_subgroup_means(values, np.stack([right, ~right]), n_boot=50, seed=3)
    w = bootstrap_weights(4, 50, 3)
    for b in range(50):
        c = w[b]  # how often each image was drawn
        expected_right = (c[0] * 1 + c[2] * 4) / (c[0] + c[2]) if c[0] + c[2] else np.nan
        expected_wrong = (c[1] * 2 + c[3] * 8) / (c[1] + c[3]) if c[1] + c[3] else np.nan
        np.testing.assert_allclose(boot[b], [expected_right, expected_wrong])


def test_trapezoid_by_hand_on_any_axis():
    x = np.array([0.0, 1.0, 3.0])
    y = np.array([[2.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    # by hand: 1·(2 + 4)/2 + 2·(4 + 0)/2 = 7 and 1·1 + 2·1 = 3
    assert trapezoid(y, x).tolist() == [7.0, 3.0]
    assert trapezoid(y[0], x) == 7.0 and np.ndim(trapezoid(y[0], x)) == 0
    # along the first axis: columns (2, 1), (4, 1), (0, 1) over x = (0, 2): (2+1)/2·2 = 3, 5, 1
    assert trapezoid(y, np.array([0.0, 2.0]), axis=0).tolist() == [3.0, 5.0, 1.0]
    with pytest.raises(ValueError, match="points"):
        trapezoid(y, x[:2])
    with pytest.raises(ValueError, match="one-dimensional"):
        trapezoid(y, y)


def test_trapezoid_is_bit_identical_to_the_installed_numpy():
    """The compat rule equals numpy's own trapezoid (np.trapezoid on numpy 2, np.trapz on 1.x) exactly."""
    numpy_rule = getattr(np, "trapezoid", None) or getattr(np, "trapz")
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 1, 17))
    for axis, y in ((-1, rng.normal(size=(5, 17))), (0, rng.normal(size=(17, 4))), (1, rng.normal(size=(3, 17, 2)))):
        assert np.array_equal(trapezoid(y, x, axis=axis), numpy_rule(y, x, axis=axis))
