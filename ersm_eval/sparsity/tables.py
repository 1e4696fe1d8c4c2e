"""The tables of a sparsity run from its per-image records (summary, per image, per class,
localization, keep histogram), and what the run could not measure, in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ersm_eval.localization import iou_metric, localization_metrics, localization_table, per_image_metrics
from ersm_eval.maps import BASELINE_MAPS
from ersm_eval.records import no_images_error, sort_records
from ersm_eval.schema import TABLES
from ersm_eval.sparsity.settings import NO_MASKS_NOTE, NOT_ASKED_NOTE, SparsitySettings
from ersm_eval.sparsity.statistics import (
    ABSOLUTE_KEEP,
    FOCUS_MASS,
    HIGH_CONFIDENCE,
    HIST_BINS,
    failure_categories,
    hard_mask_components,
    keep_entropy,
    neighbour_agreement,
)
from ersm_eval.stats import bootstrap_mean_ci, bootstrap_subgroup_means, percentile_interval, wilson_interval
from ersm_eval.verdicts import LARGE_OBJECT_FRACTION, boxes_uninformative, uninformative_boxes_sentence

__all__ = ["SparsityResult", "sparsity_tables"]

_QUANTILES = (("keep_rate_q05", 0.05), ("keep_rate_q25", 0.25), ("keep_rate_median", 0.5),
              ("keep_rate_q75", 0.75), ("keep_rate_q95", 0.95))


@dataclass
class SparsityResult:
    """Tables (schema names → DataFrames) and what was skipped, for the CLI and summary.json."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def sparsity_tables(records: dict[str, np.ndarray], map_names: Sequence[str], st: SparsitySettings,
                    class_names: Sequence[str], notes: Sequence[str] = (), head_is_linear: bool = True) -> SparsityResult:
    """Tables of :mod:`ersm_eval.schema` from (possibly gathered) records in any order.

    Args:
        records: per-image records (:meth:`SparsityEvaluator.records`).
        map_names: the model's maps (keep, energy, cam).
        st: the settings (label, thresholds, bootstrap).
        class_names: names of the classes (per_class_keep.csv).
        notes: what the model cannot give, in words (kept first in the result's notes).
        head_is_linear: the CAM is exact (said in the result's info).

    Raises:
        DatasetError: no images.
    """
    rec = sort_records(records, "sparsity")
    n = len(rec["index"])
    if n == 0:
        raise no_images_error("sparsity")
    gated = "keep" in map_names
    correct = rec["prediction"] == rec["label"]
    notes = list(notes)
    localized = bool(rec["has_mask"].any())
    if st.localize and not localized:
        notes.append(NO_MASKS_NOTE)
    elif localized and not rec["has_mask"].all():
        notes.append(f"localization on the {int(rec['has_mask'].sum())} of {n} images that have an object mask or box")
    loc_info = _localization_info(rec, localized, st.localize)
    if loc_info["uninformative"]:
        notes.append(loc_info["note"])

    rows: list[dict[str, Any]] = []

    def add(map_name: str, metric: str, value, low=np.nan, high=np.nan, threshold=np.nan) -> None:
        rows.append({"checkpoint": st.label, "map": map_name, "metric": metric, "threshold": float(threshold),
                     "value": float(value), "ci_low": float(low), "ci_high": float(high)})

    def add_mean(map_name: str, metric: str, values, threshold=np.nan) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return
        low, high = bootstrap_mean_ci(values, n_boot=st.n_boot, seed=st.seed)
        add(map_name, metric, values.mean(), low, high, threshold)

    def add_prop(map_name: str, metric: str, hits, threshold=np.nan) -> None:
        hits = np.asarray(hits, dtype=np.float64)
        hits = hits[np.isfinite(hits)]
        if len(hits) == 0:
            return
        low, high = wilson_interval(hits.sum(), len(hits))
        add(map_name, metric, hits.mean(), low, high, threshold)

    add("", "n_images", n)
    add_prop("", "accuracy", correct)
    add_mean("", "mean_confidence", rec["confidence"])
    if localized:
        add_mean("", "object_area_fraction", rec["object_area"])

    per_image: dict[str, Any] = {}
    keep_rate = None
    if gated:
        keep = rec["keep"].reshape(n, -1).astype(np.float64)
        keep_rate = keep.mean(1)
        below = (keep < ABSOLUTE_KEEP).mean(1)
        hard = rec["keep"] >= ABSOLUTE_KEEP
        comps = [hard_mask_components(h) for h in hard]
        n_comp = np.array([c[0] for c in comps], dtype=np.float64)
        largest = np.array([c[1] for c in comps], dtype=np.float64)
        agree = np.array([neighbour_agreement(h) for h in hard])
        entropy = keep_entropy(keep)
        add_mean("keep", "mean_keep", keep_rate)
        add_mean("keep", "frac_below_half", below, threshold=ABSOLUTE_KEEP)
        add("keep", "keep_rate_sd", keep_rate.std(ddof=1) if n > 1 else np.nan)
        for metric, q in _QUANTILES:
            add("keep", metric, np.quantile(keep_rate, q))
        add("keep", "keep_rate_min", keep_rate.min())
        add("keep", "keep_rate_max", keep_rate.max())
        _correct_vs_wrong(add, keep_rate, correct, st.seed, st.n_boot)
        add_mean("keep", "keep_entropy", entropy)
        add_mean("keep", "n_components", n_comp, threshold=ABSOLUTE_KEEP)
        add_mean("keep", "largest_component_share", largest, threshold=ABSOLUTE_KEEP)
        add_mean("keep", "neighbour_agreement", agree, threshold=ABSOLUTE_KEEP)
        add_prop("keep", "nothing_kept", n_comp == 0, threshold=ABSOLUTE_KEEP)
        per_image.update(frac_below_half=below, keep_entropy=entropy, n_components=n_comp,
                         largest_component_share=largest, neighbour_agreement=agree)
    localization = None
    if localized:
        localization = _localization(rec, correct, map_names, st)
        # the summary's localization rows are copies of localization.csv's, in the summary's naming
        metric_names = {"mass_in_object": ("mass_in_object", np.nan), "box_iou": ("box_iou", st.box_threshold),
                        "box_gt_known": ("box_gt_known", st.box_threshold),
                        "box_accuracy": ("box_accuracy", st.box_threshold), "pointing_game": ("pointing_game", np.nan),
                        **{iou_metric(t): ("iou", t) for t in st.iou_thresholds}}
        last_iou = iou_metric(st.iou_thresholds[-1]) if st.iou_thresholds else "mass_in_object"
        for row in localization[localization["map"].isin(map_names)].itertuples(index=False):
            metric, threshold = metric_names[row.metric]
            if row.n_images:
                add(row.map, metric, row.value, row.ci_low, row.ci_high, threshold)
            if row.map == "keep" and row.metric == last_iou:
                add_mean("keep", "iou_absolute", rec["keep_iou_absolute"], threshold=ABSOLUTE_KEEP)

    primary = "keep" if gated else "cam"
    mass = rec[f"{primary}_mass"] if localized else None
    failure = failure_categories(correct, rec["confidence"], mass, keep_rate)
    if not gated and not localized:
        notes.append("failure categories focused/distracted need a keep map or object masks; only high_confidence is marked")
    nan = np.full(n, np.nan)
    table = pd.DataFrame({
        "checkpoint": st.label,
        "index": rec["index"],
        "label": rec["label"],
        "prediction": rec["prediction"],
        "correct": correct,
        "confidence": rec["confidence"],
        "mean_keep": keep_rate if gated else nan,
        "object_keep_mass": rec["keep_mass"] if gated else nan,
        "iou": rec["keep_iou_absolute"] if gated else nan,
        "failure": failure,
        # extra columns, after the schema's
        "true_prob": rec["true_prob"],
        "object_area": rec["object_area"],
        **{k: per_image.get(k, nan) for k in ("frac_below_half", "keep_entropy", "n_components",
                                               "largest_component_share", "neighbour_agreement")},
    })
    for name in map_names:
        if name != "keep":
            table[f"{name}_mass"] = rec[f"{name}_mass"]
            table[f"{name}_iou"] = rec[f"{name}_iou"][:, st.iou_thresholds.index(0.5)] if 0.5 in st.iou_thresholds else nan
        table[f"{name}_box_iou"] = rec[f"{name}_box_iou"]

    tables = {
        "sparsity_summary.csv": pd.DataFrame(rows, columns=TABLES["sparsity_summary.csv"]),
        "per_image.csv": table,
        "per_class_keep.csv": _per_class(rec, correct, keep_rate, st.label, class_names),
    }
    if localization is not None:
        tables["localization.csv"] = localization
    if gated:
        counts, edges = np.histogram(keep_rate, bins=HIST_BINS, range=(0.0, 1.0))
        tables["keep_histogram.csv"] = pd.DataFrame(
            {"checkpoint": st.label, "bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}
        )
    info = {
        "maps": list(map_names),
        "cam": "exact (linear head)" if head_is_linear else "gradient x input (approximate)",
        "localized_images": int(rec["has_mask"].sum()),
        "localization": loc_info,
        "iou_thresholds": list(st.iou_thresholds),
        "box_threshold": st.box_threshold,
        "failure_rule": {"high_confidence": HIGH_CONFIDENCE, "focus_mass": FOCUS_MASS, "primary_map": primary,
                         "fallback": "keep rate <= median keep rate -> focused"},
        "failure_counts": {k: int((failure == k).sum()) for k in ("focused", "distracted", "high_confidence")},
        "bootstrap": {"n_boot": st.n_boot, "seed": st.seed},
    }
    return SparsityResult(tables=tables, notes=notes, info=info)


def _localization(rec, correct, map_names: Sequence[str], st: SparsitySettings) -> pd.DataFrame:
    """localization.csv from the records: every map's scores on the images that have an object."""
    sel = rec["has_mask"]
    per_map = {
        name: per_image_metrics(rec[f"{name}_mass"][sel], rec[f"{name}_iou"][sel], rec[f"{name}_box_iou"][sel],
                                rec[f"{name}_pointing"][sel], correct[sel], st.iou_thresholds)
        for name in [*map_names, *BASELINE_MAPS]
    }
    return localization_table(per_map, st.label, localization_metrics(st.iou_thresholds), st.seed, st.n_boot)


def _localization_info(rec, localized: bool, localize: bool) -> dict[str, Any]:
    """summary.json's account of localization: measured or not, and whether the boxes can tell anything."""
    if not localized:
        return {"measured": False, "images": 0, "uninformative": False, "large_object_share": None,
                "note": NO_MASKS_NOTE if localize else NOT_ASKED_NOTE}
    areas = rec["object_area"][rec["has_mask"]]
    share = float((areas >= LARGE_OBJECT_FRACTION).mean())
    uninformative = boxes_uninformative(areas)
    return {
        "measured": True,
        "images": int(len(areas)),
        "baselines": list(BASELINE_MAPS),
        "large_object_fraction": LARGE_OBJECT_FRACTION,
        "large_object_share": share,
        "uninformative": uninformative,
        "note": uninformative_boxes_sentence(share) if uninformative else None,
    }


def _correct_vs_wrong(add, keep_rate: np.ndarray, correct: np.ndarray, seed: int, n_boot: int) -> None:
    n_right, n_wrong = int(correct.sum()), int((~correct).sum())
    boot = bootstrap_subgroup_means(keep_rate, np.stack([correct, ~correct]), n_boot, seed)  # [n_boot, 2]
    for metric, count, mask, column in (("mean_keep_correct", n_right, correct, 0),
                                        ("mean_keep_wrong", n_wrong, ~correct, 1)):
        if count:
            low, high = percentile_interval(boot[:, column], ignore_nan=True)
            add("keep", metric, keep_rate[mask].mean(), low, high)
    if n_right and n_wrong:
        low, high = percentile_interval(boot[:, 0] - boot[:, 1], ignore_nan=True)
        add("keep", "keep_gap_correct_minus_wrong", keep_rate[correct].mean() - keep_rate[~correct].mean(), low, high)


def _per_class(rec, correct, keep_rate, checkpoint: str, class_names: Sequence[str]) -> pd.DataFrame:
    rows = []
    for k, name in enumerate(class_names):
        sel = rec["label"] == k
        count = int(sel.sum())
        rows.append({
            "checkpoint": checkpoint, "class_index": k, "class_name": name, "n": count,
            "mean_keep": float(keep_rate[sel].mean()) if keep_rate is not None and count else np.nan,
            "accuracy": float(correct[sel].mean()) if count else np.nan,
        })
    return pd.DataFrame(rows, columns=TABLES["per_class_keep.csv"])
