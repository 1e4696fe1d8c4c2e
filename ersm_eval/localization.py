"""Localization of the object by a map (SPEC §4): mass inside the object, IoU and box accuracy.

Pure numpy functions on maps already upsampled to the image (S×S) and made
non-negative (:func:`ersm_eval.maps.saliency`). Box accuracy follows the
weakly-supervised localization protocol of ``reference/tdam-supplement.txt`` §1.2
(itself Grad-CAM's, Selvaraju et al., 2017): threshold the map at 15% of its
maximum, take the single largest 8-connected segment, draw its bounding box; a
prediction counts as localized when the class is correct and the box's IoU with
the ground-truth box exceeds 0.5.

Boxes are (x0, y0, x1, y1) in pixels with exclusive ends (a one-pixel segment at
column 3 spans x0 = 3, x1 = 4), the convention of the dataset items.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "BOX_THRESHOLD",
    "IOU_THRESHOLDS",
    "mass_inside",
    "threshold_map",
    "mask_iou",
    "largest_component",
    "bounding_box",
    "box_iou",
    "box_from_map",
    "box_correct",
]

BOX_THRESHOLD = 0.15  # fraction of the map's max for the box protocol
IOU_THRESHOLDS = (0.25, 0.5, 0.75)  # fractions of the map's max for the mask IoU
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def mass_inside(saliency: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of a map's mass inside the object: Σ map·mask / Σ map over the last two axes.

    Args:
        saliency: non-negative map [..., S, S].
        mask: object mask [..., S, S] (bool or in [0, 1]).

    Returns:
        [...] in [0, 1]; NaN where the map is all zero.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    total = saliency.sum(axis=(-2, -1))
    inside = (saliency * np.asarray(mask, dtype=np.float64)).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def threshold_map(saliency: np.ndarray, fraction: float) -> np.ndarray:
    """Binary map [..., S, S]: value ≥ fraction × (the map's max); all False where the max ≤ 0."""
    saliency = np.asarray(saliency, dtype=np.float64)
    peak = saliency.max(axis=(-2, -1), keepdims=True)
    return (saliency >= fraction * peak) & (peak > 0)


def mask_iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of binary masks over the last two axes; NaN where both are empty."""
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    inter = (pred & target).sum(axis=(-2, -1))
    union = (pred | target).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def largest_component(binary: np.ndarray) -> np.ndarray:
    """The largest 8-connected segment of a 2-D binary mask (ties: the first in raster order)."""
    labels, count = ndimage.label(np.asarray(binary, dtype=bool), structure=_EIGHT)
    if count == 0:
        return np.zeros_like(binary, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def bounding_box(binary: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) around the True pixels of a 2-D mask (exclusive ends), or None if empty."""
    binary = np.asarray(binary, dtype=bool)
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    if len(rows) == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes; 0 when either is None or empty."""
    if a is None or b is None:
        return 0.0
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def box_from_map(saliency: np.ndarray, fraction: float = BOX_THRESHOLD) -> tuple[float, float, float, float] | None:
    """The protocol's predicted box for one map [S, S]: threshold, largest segment, its box."""
    return bounding_box(largest_component(threshold_map(saliency, fraction)))


def box_correct(iou, correct, iou_threshold: float = 0.5) -> np.ndarray:
    """Localization hit: class correct and box IoU > ``iou_threshold`` (elementwise)."""
    return np.asarray(correct, dtype=bool) & (np.asarray(iou, dtype=np.float64) > iou_threshold)
