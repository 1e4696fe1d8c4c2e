"""Pure statistics of one keep map: coherence of the hard mask, entropy, failure categories."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FOCUS_MASS",
    "HIGH_CONFIDENCE",
    "HIST_BINS",
    "ABSOLUTE_KEEP",
    "hard_mask_components",
    "neighbour_agreement",
    "keep_entropy",
    "failure_categories",
]

FOCUS_MASS = 0.5  # object mass of the primary map at or above which a failure is "focused"
HIGH_CONFIDENCE = 0.9  # confidence of a wrong prediction at or above which it is "high_confidence"
HIST_BINS = 20  # bins of the per-image keep-rate histogram over [0, 1]
ABSOLUTE_KEEP = 0.5  # the hard mask: π ≥ 0.5
_EIGHT = np.ones((3, 3), dtype=bool)


def hard_mask_components(hard: np.ndarray) -> tuple[int, float]:
    """(number of 8-connected components of True tokens, largest component's share of them).

    The share is NaN when no token is True.
    """
    from scipy import ndimage

    hard = np.asarray(hard, dtype=bool)
    labels, count = ndimage.label(hard, structure=_EIGHT)
    if count == 0:
        return 0, float("nan")
    sizes = np.bincount(labels.ravel())[1:]
    return int(count), float(sizes.max() / sizes.sum())


def neighbour_agreement(hard: np.ndarray) -> float:
    """Share of 8-neighbour pairs on the grid (each unordered pair once) with equal values."""
    hard = np.asarray(hard, dtype=bool)
    pairs = [
        (hard[:, 1:], hard[:, :-1]),  # horizontal
        (hard[1:, :], hard[:-1, :]),  # vertical
        (hard[1:, 1:], hard[:-1, :-1]),  # diagonal
        (hard[1:, :-1], hard[:-1, 1:]),  # anti-diagonal
    ]
    same = sum(int((a == b).sum()) for a, b in pairs)
    total = sum(a.size for a, _ in pairs)
    return same / total if total else float("nan")


def keep_entropy(keep: np.ndarray) -> np.ndarray:
    """Normalized entropy of p = π / Σπ over the last axis (tokens), in [0, 1]; NaN if Σπ = 0."""
    keep = np.asarray(keep, dtype=np.float64)
    n = keep.shape[-1]
    total = keep.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = keep / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)
    h = np.where(total[..., 0] > 0, h, np.nan)
    return h / math.log(n) if n > 1 else np.zeros_like(h)


def failure_categories(
    correct: np.ndarray,
    confidence: np.ndarray,
    object_mass: np.ndarray | None = None,
    keep_rate: np.ndarray | None = None,
    focus_mass: float = FOCUS_MASS,
    high_confidence: float = HIGH_CONFIDENCE,
) -> np.ndarray:
    """'' for correct predictions, else 'high_confidence', 'focused', 'distracted' or '' (see module doc)."""
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    out = np.full(correct.shape, "", dtype=object)
    wrong = ~correct
    if keep_rate is not None and np.isfinite(keep_rate).any():
        median = float(np.nanmedian(keep_rate))
        out[wrong] = np.where(np.asarray(keep_rate)[wrong] <= median, "focused", "distracted")
    if object_mass is not None:
        mass = np.asarray(object_mass, dtype=np.float64)
        known = wrong & np.isfinite(mass)
        out[known] = np.where(mass[known] >= focus_mass, "focused", "distracted")
    out[wrong & (confidence >= high_confidence)] = "high_confidence"
    return out
