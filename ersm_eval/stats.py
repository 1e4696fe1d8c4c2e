"""Statistics used by every evaluator: intervals over images and paired tests.

Pure numpy/scipy functions. Intervals are 95% by default. This module is the
one home of the bootstrap: only :func:`bootstrap_weights` draws resamples (as
multinomial image weights, so many curves, one column per k, share one set of
resamples and memory stays at [n_boot, n_images]), only
:func:`percentile_interval` turns resampled statistics into an interval, and only
:func:`paired_bootstrap_test` computes a bootstrap p-value. Evaluators call these.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

__all__ = [
    "wilson_interval",
    "bootstrap_weights",
    "percentile_interval",
    "bootstrap_subgroup_means",
    "bootstrap_mean_ci",
    "paired_bootstrap_diff",
    "mcnemar_exact",
    "normalized_auc",
    "paired_bootstrap_test",
    "trapezoid",
]

_Z95 = 1.959963984540054


def wilson_interval(successes, n, z: float = _Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion; vectorized; n = 0 gives (nan, nan)."""
    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def bootstrap_weights(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, n] multinomial resampling counts (each row sums to n)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95, ignore_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of resampled statistics [n_boot, ...] over axis 0: the (1 − level)/2 and
    (1 + level)/2 quantiles (numpy's linear interpolation). ``ignore_nan`` skips NaN resamples
    (e.g. a subgroup that a resample left empty)."""
    alpha = (1.0 - level) / 2.0
    quantile = np.nanquantile if ignore_nan else np.quantile
    low, high = quantile(np.asarray(samples, dtype=np.float64), [alpha, 1.0 - alpha], axis=0)
    return low, high


def bootstrap_subgroup_means(values: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Resampled means of ``values`` [n] within each subgroup, [n_boot, G].

    Images are resampled together (one set of :func:`bootstrap_weights`), and each
    subgroup's mean is taken over the resampled images in it (``groups``: bool [G, n]),
    so a difference of two columns is a bootstrap of the difference of the subgroup
    means. A resample with no image of a subgroup gives NaN there.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.float64)
    w = bootstrap_weights(len(values), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ (values * groups).T) / (w @ groups.T)


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0 of values [n, ...]."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    w = bootstrap_weights(n, n_boot, seed) if weights is None else weights
    flat = values.reshape(n, -1)
    means = (w @ flat) / n  # [n_boot, K]
    low, high = percentile_interval(means, level)
    return low.reshape(values.shape[1:]), high.reshape(values.shape[1:])


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Mean of a − b over images (axis 0) with a percentile interval and a two-sided bootstrap p-value.

    A thin caller of :func:`paired_bootstrap_test` (the one home of the bootstrap
    p-value): returns (mean, ci_low, ci_high, p) shaped like ``a.shape[1:]``.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    shape = diff.shape[1:]
    mean, low, high, _, p = paired_bootstrap_test(diff.reshape(diff.shape[0], -1), n_boot=n_boot, seed=seed, level=level)
    return mean.reshape(shape), low.reshape(shape), high.reshape(shape), p.reshape(shape)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (binomial) McNemar test over images (axis 0), per column.

    Returns (statistic = discordant pairs where a is right and b wrong minus the reverse,
    two-sided p-value). No discordant pairs gives p = 1.
    """
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    only_a = (a & ~b).sum(0)
    only_b = (~a & b).sum(0)
    total = only_a + only_b
    p = np.minimum(1.0, 2.0 * _st.binom.cdf(np.minimum(only_a, only_b), total, 0.5))
    p = np.where(total == 0, 1.0, p)
    return (only_a - only_b).astype(float), p


def trapezoid(y: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Trapezoidal integral of ``y`` over the sample points ``x`` along ``axis``.

    The project's one trapezoid rule, for every numpy the project allows:
    ``np.trapezoid`` exists from numpy 2.0 on, and ``np.trapz`` (numpy 1.x) is
    deprecated there. The sum is numpy's own, term for term (``Σ Δx · (y[i+1] + y[i]) / 2``),
    so the result is bit-identical to ``np.trapezoid`` wherever that exists.

    Args:
        y: values, with ``len(x)`` points along ``axis``.
        x: 1-D sample points.
        axis: the axis of ``y`` to integrate over.

    Returns:
        The integral, with ``axis`` removed (a numpy scalar for 1-D ``y``).
    """
    y = np.asanyarray(y)
    x = np.asanyarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must be one-dimensional, got shape {x.shape}")
    if y.shape[axis] != len(x):
        raise ValueError(f"x has {len(x)} points but y has {y.shape[axis]} along axis {axis}")
    shape = [1] * y.ndim
    shape[axis] = max(len(x) - 1, 0)
    upper = [slice(None)] * y.ndim
    lower = [slice(None)] * y.ndim
    upper[axis], lower[axis] = slice(1, None), slice(None, -1)
    return (np.diff(x).reshape(shape) * (y[tuple(upper)] + y[tuple(lower)]) / 2.0).sum(axis)


def normalized_auc(x: np.ndarray, y: np.ndarray):
    """Trapezoidal area under y(x) divided by the x range (so a constant curve c gives c).

    ``y`` may hold many curves along its last axis (e.g. one per image, [n, S]); a
    single curve gives a float, several give an array of their areas. The area is
    linear in y, so the mean of per-image areas is the area of the mean curve.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) != y.shape[-1]:
        raise ValueError(f"x has {len(x)} points but y has {y.shape[-1]} along its last axis")
    if len(x) < 2 or x[-1] == x[0]:
        area = y.mean(-1) if len(x) else np.full(y.shape[:-1], np.nan)
    else:
        area = trapezoid(y, x, axis=-1) / (x[-1] - x[0])
    return float(area) if np.ndim(area) == 0 else area


def paired_bootstrap_test(
    diff: np.ndarray, weights: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paired bootstrap of per-image differences diff [n, K] (e.g. correct_a − correct_b), per column.

    Returns (mean, ci_low, ci_high, standard error, two-sided p-value). This is the
    project's one bootstrap p-value: (1 + resamples on the far side of zero) · 2 /
    (n_boot + 1), capped at 1, so it is never exactly 0; a column of zeros gives p = 1.
    The interval is the percentile interval of the resampled means. Pass ``weights`` from
    :func:`bootstrap_weights` to share one set of resamples between several calls.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim == 1:
        diff = diff[:, None]
    n = diff.shape[0]
    if n == 0:
        nan = np.full(diff.shape[1:], np.nan)
        return nan, nan.copy(), nan.copy(), nan.copy(), nan.copy()
    w = bootstrap_weights(n, n_boot, seed) if weights is None else weights
    means = (w @ diff) / n  # [n_boot, K]
    boots = means.shape[0]
    low, high = percentile_interval(means, level)
    far = np.minimum((means <= 0).sum(0), (means >= 0).sum(0))
    p = np.minimum(1.0, 2.0 * (far + 1.0) / (boots + 1.0))
    p = np.where(np.all(diff == 0, axis=0), 1.0, p)
    return diff.mean(0), low, high, means.std(0, ddof=1) if boots > 1 else np.zeros(diff.shape[1]), p
