"""Localization of the object by a map: mass inside the object, IoU and box accuracy.

Pure numpy functions on maps already upsampled to the image (S×S) and made
non-negative (:func:`ersm_eval.maps.saliency`). Box accuracy follows the
weakly-supervised localization protocol of ``reference/tdam-supplement.txt`` §1.2
(itself Grad-CAM's, Selvaraju et al., 2017): threshold the map at 15% of its
maximum, take the single largest 8-connected segment, draw its bounding box; a
prediction counts as localized when the class is correct and the box's IoU with
the ground-truth box exceeds 0.5.

Boxes are (x0, y0, x1, y1) in pixels with exclusive ends (a one-pixel segment at
column 3 spans x0 = 3, x1 = 4), the convention of the dataset items.

Every score of a real map stands beside the same score of two maps that know
nothing about the image (:data:`ersm_eval.maps.BASELINE_MAPS`): ``uniform`` and
``center``. :func:`localization_table` reports, per map and metric, the mean
over images with its interval and, for a real map, its *excess* over the better
of the two baselines (paired per image, percentile bootstrap) and the verdict of
:func:`ersm_eval.verdicts.localization_verdict`.

What a flat map (every pixel equal, the ``uniform`` baseline) scores, exactly:

- ``mass_in_object``: the object's area fraction (its mass is spread evenly);
- ``iou@t``: every pixel reaches t × max, so the thresholded map is the whole
  image and the IoU is the object's area fraction;
- ``box_iou``: the largest segment is the whole image, so the box is the image
  and the IoU is the ground-truth box's area fraction; ``box_gt_known`` and
  ``box_accuracy`` are hits exactly where that fraction exceeds 0.5 (and, for
  box accuracy, the class is right);
- ``pointing_game``: every pixel is a maximum, and a tie is scored as the share
  of the maximal pixels that lie on the object (the expected hit of a random
  tie-break), so again the object's area fraction.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from ersm_core.data.boxes import bounding_box
from ersm_eval.maps import BASELINE_MAPS
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_mean_ci, paired_bootstrap_test, wilson_interval
from ersm_eval.verdicts import localization_verdict

__all__ = [
    "BOX_THRESHOLD",
    "IOU_THRESHOLDS",
    "BINARY_METRICS",
    "iou_metric",
    "localization_metrics",
    "mass_inside",
    "threshold_map",
    "mask_iou",
    "largest_component",
    "box_iou",
    "box_from_map",
    "box_correct",
    "pointing_hits",
    "map_scores",
    "per_image_metrics",
    "localization_table",
]

BOX_THRESHOLD = 0.15  # fraction of the map's max for the box protocol
IOU_THRESHOLDS = (0.25, 0.5, 0.75)  # fractions of the map's max for the mask IoU
BINARY_METRICS = ("box_gt_known", "box_accuracy")  # hit or miss per image: Wilson intervals
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def iou_metric(threshold: float) -> str:
    """Name of the mask-IoU metric at a threshold (a fraction of the map's max): ``iou@0.5``."""
    return f"iou@{float(threshold):g}"


def localization_metrics(iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> list[str]:
    """The metrics of localization.csv, in table order."""
    return ["mass_in_object", *(iou_metric(t) for t in iou_thresholds), "box_iou", "box_gt_known",
            "box_accuracy", "pointing_game"]


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


def pointing_hits(saliency: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pointing game per map [..., S, S]: the share of the map's maximal pixels on the object.

    With one maximum this is 1 (the peak is on the object) or 0. Tied maxima count
    as the expected hit of a random pick among them, so a flat map scores the
    object's area fraction instead of whatever pixel comes first. A map whose max
    is ≤ 0 points nowhere and scores 0.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    peak = saliency.max(axis=(-2, -1), keepdims=True)
    at_peak = saliency == peak
    hits = (at_peak & mask).sum(axis=(-2, -1)) / at_peak.sum(axis=(-2, -1))
    return np.where(peak[..., 0, 0] > 0, hits, 0.0)


def map_scores(
    saliency: np.ndarray,
    mask: np.ndarray,
    gt_boxes: Sequence,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    box_threshold: float = BOX_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Per-image localization scores of maps [B, S, S] against objects, one computation for every map.

    Args:
        saliency: non-negative maps upsampled to the image, [B, S, S] (a baseline map
            may be broadcast to B).
        mask: object masks [B, S, S] (bool).
        gt_boxes: B ground-truth boxes (x0, y0, x1, y1).
        iou_thresholds: fractions of each map's max for the mask IoU.
        box_threshold: fraction of the max for the box protocol.

    Returns:
        ``mass`` [B], ``iou`` [B, T], ``box_iou`` [B] and ``pointing`` [B].
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    return {
        "mass": mass_inside(saliency, mask),
        "iou": np.stack([mask_iou(threshold_map(saliency, t), mask) for t in iou_thresholds], axis=-1),
        "box_iou": np.array([box_iou(box_from_map(m, box_threshold), g) for m, g in zip(saliency, gt_boxes)],
                            dtype=np.float64),
        "pointing": pointing_hits(saliency, mask),
    }


def per_image_metrics(
    mass: np.ndarray, iou: np.ndarray, box_iou_values: np.ndarray, pointing: np.ndarray, correct: np.ndarray,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, np.ndarray]:
    """The per-image values [n] of every metric of :func:`localization_metrics` for one map.

    NaN marks an image where the metric is undefined (no object mask, or a map that
    is zero everywhere for ``mass_in_object``).
    """
    box = np.asarray(box_iou_values, dtype=np.float64)
    known = np.isfinite(box)
    out = {"mass_in_object": np.asarray(mass, dtype=np.float64)}
    iou = np.asarray(iou, dtype=np.float64)
    for j, t in enumerate(iou_thresholds):
        out[iou_metric(t)] = iou[:, j]
    out["box_iou"] = box
    with np.errstate(invalid="ignore"):
        out["box_gt_known"] = np.where(known, box > 0.5, np.nan)
        out["box_accuracy"] = np.where(known, box_correct(np.where(known, box, 0.0), correct), np.nan)
    out["pointing_game"] = np.asarray(pointing, dtype=np.float64)
    return out


def _estimate(metric: str, values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    if metric in BINARY_METRICS:
        low, high = wilson_interval(values.sum(), len(values))
    else:
        low, high = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
    return float(values.mean()), float(low), float(high)


def localization_table(
    per_map: Mapping[str, Mapping[str, np.ndarray]],
    checkpoint: str,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Rows of localization.csv: each map's metrics, and each real map's excess over the better baseline.

    Args:
        per_map: map name → metric → per-image values [n] (same images, same order,
            for every map; NaN where undefined). Must hold the ``uniform`` and
            ``center`` baselines.
        checkpoint: the value of the checkpoint column.
        metrics: metrics to report, in order (default: every metric of the baselines).
        seed: bootstrap seed (intervals of means and of excesses).
        n_boot: bootstrap resamples.

    Returns:
        One row per (map, metric): ``value`` the mean over images where it is defined,
        ``ci_low``/``ci_high`` its 95% interval (Wilson for hit-or-miss metrics,
        percentile bootstrap otherwise). For a real map, the better baseline is the
        one with the higher mean on that metric (``uniform`` on a tie), ``excess``
        the mean per-image difference to it over the images where both are defined,
        with a paired percentile-bootstrap interval, and ``verdict`` ``localizes``
        when that interval lies above 0, else ``does_not_localize``. Baseline rows
        have NaN excess and the verdict ``baseline``. Extra columns: ``baseline``
        (the better baseline's name; '' on baseline rows) and ``n_images``.
    """
    missing = [b for b in BASELINE_MAPS if b not in per_map]
    if missing:
        raise ValueError(f"localization_table needs the baseline maps {', '.join(BASELINE_MAPS)}; missing {missing}")
    metrics = list(metrics) if metrics is not None else list(per_map[BASELINE_MAPS[0]])
    real = [m for m in per_map if m not in BASELINE_MAPS]
    rows = []
    for metric in metrics:
        base_values = {b: np.asarray(per_map[b][metric], dtype=np.float64) for b in BASELINE_MAPS}
        estimates = {b: _estimate(metric, v, n_boot, seed) for b, v in base_values.items()}
        means = [estimates[b][0] for b in BASELINE_MAPS]
        better = BASELINE_MAPS[int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))]
        for name in [*real, *BASELINE_MAPS]:
            values = np.asarray(per_map[name][metric], dtype=np.float64)
            value, low, high = estimates[name] if name in estimates else _estimate(metric, values, n_boot, seed)
            row = {"checkpoint": checkpoint, "map": name, "metric": metric, "value": value, "ci_low": low,
                   "ci_high": high, "excess": np.nan, "excess_ci_low": np.nan, "excess_ci_high": np.nan}
            if name in BASELINE_MAPS:
                row.update(verdict=localization_verdict(np.nan, is_baseline=True), baseline="")
            else:
                reference = base_values[better]
                paired = np.isfinite(values) & np.isfinite(reference)
                if paired.any():
                    excess, e_low, e_high, _, _ = paired_bootstrap_test(values[paired] - reference[paired],
                                                                        n_boot=n_boot, seed=seed)
                    row.update(excess=float(excess[0]), excess_ci_low=float(e_low[0]), excess_ci_high=float(e_high[0]))
                row.update(verdict=localization_verdict(row["excess_ci_low"]), baseline=better)
            row["n_images"] = int(np.isfinite(values).sum())
            rows.append(row)
    columns = [*TABLES["localization.csv"], "baseline", "n_images"]
    return pd.DataFrame(rows, columns=columns)
