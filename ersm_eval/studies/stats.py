"""Two-level statistics of a study: over training seeds, then over images.

An interval over the images of one trained model says how sure we are of *that*
model; it says nothing about the next training run. A group's numbers are therefore
aggregated where the variance is (a hierarchical bootstrap):

* **Point estimate.** Each seed's mean over the images, then the mean of those over
  seeds; the standard deviation over seeds uses ddof = 1 (what papers report as
  "± std") and is undefined (NaN) with one seed.
* **Interval.** A two-level bootstrap: each replicate resamples the seeds with
  replacement, then the images with replacement, and takes the mean over the drawn
  seeds of each seed's mean over the drawn images. Every checkpoint sees the same
  images, so one image draw serves every checkpoint of a replicate (paired). With
  one seed the interval is the image-level one, and training variance is not measured.
  The interval is then widened, if need be, to the widest margin below and above
  its mean that any single seed's image-level interval has around that seed's mean:
  the images are shared by every seed, so their sampling error is common to all
  seeds and a group is never reported as surer about the images than one run.
* **Differences** between groups: seeds are drawn independently for each group,
  images once for both (the same images, paired).

Every metric here is a mean of per-image values (accuracy of per-image correctness,
mean keep, ΔAUC and symmetric gain of per-image areas, localization excess), so one
set of functions serves all of them. Image draws come from
:func:`ersm_eval.stats.bootstrap_weights` and intervals from
:func:`ersm_eval.stats.percentile_interval`; a replicate's seed draw for a group is
seeded by (seed, the group's name), so a group's interval does not change when other
groups join the study.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ersm_eval.stats import bootstrap_weights, percentile_interval

__all__ = [
    "N_BOOT",
    "LEVEL",
    "GroupEstimate",
    "DifferenceEstimate",
    "TwoLevelBootstrap",
    "seed_values",
    "group_estimate",
    "group_difference",
]

N_BOOT = 2000  # bootstrap replicates
LEVEL = 0.95  # interval coverage


def seed_values(values: np.ndarray | Sequence[Sequence[float]], what: str = "values") -> np.ndarray:
    """Per-seed per-image values as a finite float array [n_seeds, n_images].

    Args:
        values: one row per seed (checkpoint) of the group, one column per image, the
            images in the same order for every row.
        what: how the message names the values (e.g. the group and metric).

    Raises:
        ValueError: not two-dimensional, no seed or no image, or a value that is NaN or infinite.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: per-image values must be numbers, one row per seed of equal length") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what}: need per-image values [seeds, images] with at least one of each, got shape {array.shape}")
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(
            f"{what}: {bad} of {array.size} per-image values are NaN or infinite; every checkpoint needs a finite "
            "value on every image (drop those images from the study for every checkpoint)"
        )
    return array


def _name_key(name: str) -> int:
    return zlib.crc32(str(name).encode("utf-8"))


@dataclass(frozen=True)
class GroupEstimate:
    """A group's figure for one metric: over seeds, with its two-level interval."""

    mean: float  # mean over seeds of each seed's mean over images
    std: float  # standard deviation of the seeds' means (ddof = 1); NaN with one seed
    n_seeds: int
    n_images: int
    ci_low: float  # two-level bootstrap interval (image-level with one seed)
    ci_high: float
    seed_means: tuple[float, ...]  # each seed's mean over images, in the order given
    seed_ci_low: tuple[float, ...]  # each seed's own image-level interval
    seed_ci_high: tuple[float, ...]

    @property
    def training_variance_measured(self) -> bool:
        """False with one seed: the interval then covers image sampling only."""
        return self.n_seeds > 1


@dataclass(frozen=True)
class DifferenceEstimate:
    """group_a − group_b for one metric, with its two-level interval."""

    diff: float  # mean of a minus mean of b
    ci_low: float
    ci_high: float
    n_seeds_a: int
    n_seeds_b: int


class TwoLevelBootstrap:
    """One set of image draws shared by every group and metric of a study.

    Args:
        n_images: images of the study (every checkpoint's values have this many).
        n_boot: replicates.
        seed: seeds the image draws and, with each group's name, the seed draws.
        level: interval coverage.
    """

    def __init__(self, n_images: int, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> None:
        if int(n_images) < 1:
            raise ValueError(f"a study needs at least one image, got {n_images}")
        if int(n_boot) < 2:
            raise ValueError(f"n_boot must be at least 2, got {n_boot}")
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        self.n_images, self.n_boot, self.seed, self.level = int(n_images), int(n_boot), int(seed), float(level)
        self.image_weights = bootstrap_weights(self.n_images, self.n_boot, self.seed)  # [n_boot, n_images] counts
        self._drawn: dict[tuple[str, str], np.ndarray] = {}  # (name, hash of values) -> replicates

    def _values(self, values, what: str) -> np.ndarray:
        array = seed_values(values, what)
        if array.shape[1] != self.n_images:
            raise ValueError(
                f"{what}: {array.shape[1]} per-image values but the study has {self.n_images} images; every "
                "checkpoint must be evaluated on the same images"
            )
        return array

    def seed_weights(self, n_seeds: int, name: str) -> np.ndarray:
        """[n_boot, n_seeds] resampling counts of a group's seeds, seeded by (seed, name)."""
        return bootstrap_weights(int(n_seeds), self.n_boot, [self.seed, _name_key(name)])

    def seed_image_means(self, values) -> np.ndarray:
        """[n_boot, n_seeds]: each seed's mean over each replicate's image draw (the same draw for every seed)."""
        array = self._values(values, "values")
        return self.image_weights @ array.T / self.n_images

    def replicates(self, values, name: str = "") -> np.ndarray:
        """[n_boot] two-level replicates: mean over drawn seeds of each seed's mean over drawn images."""
        array = self._values(values, name or "values")
        memo = (str(name), hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest())
        if memo not in self._drawn:
            per_seed = self.image_weights @ array.T / self.n_images
            counts = self.seed_weights(array.shape[0], name)
            self._drawn[memo] = (counts * per_seed).sum(1) / array.shape[0]
        return self._drawn[memo]

    def estimate(self, values, name: str = "") -> GroupEstimate:
        """Mean ± std over seeds and the two-level interval of one group's metric.

        Args:
            values: [n_seeds, n_images] per-image values, one row per seed.
            name: the group's name (seeds its seed draws).
        """
        array = self._values(values, name or "values")
        per_seed = self.image_weights @ array.T / self.n_images
        low, high = percentile_interval(self.replicates(array, name), self.level)
        seed_low, seed_high = percentile_interval(per_seed, self.level)
        means = array.mean(1)
        # never narrower than one seed's own interval: every seed sees the same images, so their
        # sampling error is shared rather than averaged away; the group interval keeps, around the
        # group mean, the widest margin below and above that any seed's interval has around its mean
        low = min(float(low), float(means.mean() - np.max(means - seed_low)))
        high = max(float(high), float(means.mean() + np.max(seed_high - means)))
        std = float(means.std(ddof=1)) if len(means) > 1 else float("nan")
        return GroupEstimate(
            mean=float(means.mean()), std=std, n_seeds=len(means), n_images=self.n_images,
            ci_low=float(low), ci_high=float(high), seed_means=tuple(float(m) for m in means),
            seed_ci_low=tuple(float(v) for v in seed_low), seed_ci_high=tuple(float(v) for v in seed_high),
        )

    def difference(self, values_a, values_b, name_a: str, name_b: str) -> DifferenceEstimate:
        """group_a − group_b: seeds drawn independently per group, images once for both (paired).

        Raises:
            ValueError: when the two names are equal (their seed draws would not be independent).
        """
        if str(name_a) == str(name_b):
            raise ValueError(f"a group difference needs two differently named groups, got {name_a!r} twice")
        a, b = self._values(values_a, str(name_a)), self._values(values_b, str(name_b))
        draws = self.replicates(a, name_a) - self.replicates(b, name_b)
        low, high = percentile_interval(draws, self.level)
        return DifferenceEstimate(float(a.mean(1).mean() - b.mean(1).mean()), float(low), float(high), len(a), len(b))


def group_estimate(values, name: str = "", n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> GroupEstimate:
    """:meth:`TwoLevelBootstrap.estimate` for one group alone (values [n_seeds, n_images])."""
    array = seed_values(values, name or "values")
    return TwoLevelBootstrap(array.shape[1], n_boot, seed, level).estimate(array, name)


def group_difference(values_a, values_b, name_a: str = "a", name_b: str = "b", n_boot: int = N_BOOT, seed: int = 0,
                     level: float = LEVEL) -> DifferenceEstimate:
    """:meth:`TwoLevelBootstrap.difference` for two groups alone (values [n_seeds, n_images] each)."""
    array = seed_values(values_a, str(name_a))
    return TwoLevelBootstrap(array.shape[1], n_boot, seed, level).difference(array, values_b, name_a, name_b)
