"""Sparsity, coherence and localization of the keep, energy and CAM maps (SPEC §4).

:class:`SparsityEvaluator` follows "accumulate, then compute": ``update(batch)``
stores small per-image records (token maps [h, w], prediction, and the
localization numbers of each map against the object mask), ``records()`` returns
them as numpy arrays with the image axis first (what
:func:`ersm_eval.distributed.gather_records` gathers), and ``compute(records)``
sorts by dataset index and returns the tables of :mod:`ersm_eval.schema`.
Nothing depends on batch size, worker count or process count; bootstrap seeds
are fixed.

Definitions (documented choices):

- *keep rate* of an image: its mean keep probability π over the N tokens;
  ``frac_below_half`` is the share of its tokens with π < 0.5.
- *keep entropy*: entropy of p_i = π_i / Σπ, divided by log N (1 = uniform keep,
  0 = one token keeps everything).
- *coherence* of the hard mask π ≥ 0.5 on the token grid: the number of
  8-connected components of kept tokens, the largest component's share of the
  kept tokens (NaN when nothing is kept), and neighbour agreement, the share of
  8-neighbour token pairs (each unordered pair once) with the same hard value.
- *localization* (datasets with object masks or boxes; a box acts as a mask):
  see :mod:`ersm_eval.localization` and :mod:`ersm_eval.maps`. ``iou`` thresholds
  the upsampled map at 0.25 / 0.5 / 0.75 of its max; ``iou_absolute`` thresholds
  the upsampled keep map at π = 0.5 (the hard mask); ``pointing_game`` is 1 when
  the map's maximum falls inside the object (tied maxima: the share of them on
  the object). Every score is also computed for the ``uniform`` and ``center``
  baseline maps on the same images; localization.csv holds them all with each
  real map's excess over the better baseline and its verdict. The localization
  rows of sparsity_summary.csv are copied from that table (one computation),
  except ``iou_absolute``, which has no baseline. When the object covers ≥ 80%
  of the image in more than half of the images, a note says the localization
  figures are uninformative.
- *failure category* of a wrong prediction: ``high_confidence`` when its
  confidence is ≥ 0.9; otherwise ``focused`` when the model's primary map (keep
  where the model has a gate, else CAM) puts at least half its mass on the
  object, ``distracted`` when less. Without object masks the rule falls back on
  sparsity: ``focused`` when the image's keep rate is at most the median keep
  rate of all images (high sparsity), else ``distracted``; with neither masks
  nor a keep map, wrong low-confidence predictions stay uncategorised ('').
- intervals: 95% Wilson intervals for proportions (accuracy, box accuracy,
  pointing game), percentile bootstrap over images (1000 resamples, fixed seed)
  for means; keep rate of correct vs wrong predictions resamples images and
  recomputes both group means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ersm_core.data.boxes import bounding_box
from ersm_eval.context import check_finite, check_labels
from ersm_eval.localization import (
    BOX_THRESHOLD,
    IOU_THRESHOLDS,
    iou_metric,
    localization_metrics,
    localization_table,
    map_scores,
    mask_iou,
    per_image_metrics,
)
from ersm_eval.maps import BASELINE_MAPS, MAP_NAMES, baseline_saliency, model_maps, saliency, upsample
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_mean_ci, bootstrap_subgroup_means, percentile_interval, wilson_interval
from ersm_eval.verdicts import LARGE_OBJECT_FRACTION, boxes_uninformative, uninformative_boxes_sentence

__all__ = [
    "FOCUS_MASS",
    "NO_MASKS_NOTE",
    "NOT_ASKED_NOTE",
    "HIGH_CONFIDENCE",
    "HIST_BINS",
    "SparsityEvaluator",
    "SparsityResult",
    "hard_mask_components",
    "neighbour_agreement",
    "keep_entropy",
    "failure_categories",
    "select_gallery",
    "gallery_arrays",
]

FOCUS_MASS = 0.5  # object mass of the primary map at or above which a failure is "focused"
HIGH_CONFIDENCE = 0.9  # confidence of a wrong prediction at or above which it is "high_confidence"
HIST_BINS = 20  # bins of the per-image keep-rate histogram over [0, 1]
ABSOLUTE_KEEP = 0.5  # the hard mask: π ≥ 0.5
NO_MASKS_NOTE = "localization not measured: the dataset has no object masks or boxes (the other statistics were still computed)"
NOT_ASKED_NOTE = "localization not measured: --no-localization was given"
_QUANTILES = (("keep_rate_q05", 0.05), ("keep_rate_q25", 0.25), ("keep_rate_median", 0.5),
              ("keep_rate_q75", 0.75), ("keep_rate_q95", 0.95))
_EIGHT = np.ones((3, 3), dtype=bool)


# -- pure statistics on one map -------------------------------------------------------------
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


# -- the evaluator ---------------------------------------------------------------------------
@dataclass
class SparsityResult:
    """Tables (schema names → DataFrames) and what was skipped, for the CLI and summary.json."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class SparsityEvaluator:
    """Keep statistics, coherence and localization of a model's maps over a dataset.

    Args:
        model: an :class:`~ersm_core.model.ERSMModel` in eval mode.
        localize: compare the maps with object masks/boxes where the items have them.
        iou_thresholds: fractions of a map's max for the mask IoU.
        box_threshold: fraction of a map's max for the box protocol.
    """

    def __init__(
        self,
        model: Any,
        localize: bool = True,
        iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
        box_threshold: float = BOX_THRESHOLD,
    ) -> None:
        self.model = model
        self.localize = localize
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.box_threshold = float(box_threshold)
        self.map_names = [m for m in MAP_NAMES if (m != "keep" or model.has_gate) and (m != "energy" or model.has_energy)]
        self.reset()

    def reset(self) -> None:
        """Forget every record."""
        self._parts: list[dict[str, np.ndarray]] = []
        self._baselines: dict[tuple, np.ndarray] = {}

    def notes(self, has_masks: bool | None = None) -> list[str]:
        """What this model (and, given ``has_masks``, the dataset) cannot give, in words."""
        out = []
        variant = self.model.config.variant
        if not self.model.has_gate:
            out.append(f"keep statistics, coherence and keep-map localization skipped: the {variant} model has no keep map")
        if not self.model.has_energy:
            out.append(f"energy map skipped: the {variant} model has no energy")
        if not self.model.head_is_linear:
            out.append("CAM is gradient x input on the pooled map (approximate): the head has a non-linear pre-logits step")
        if not self.localize:
            out.append(NOT_ASKED_NOTE)
        elif has_masks is False:
            out.append(NO_MASKS_NOTE)
        return out

    @torch.no_grad()
    def update(self, batch: dict[str, Any]) -> None:
        """Add the records of one batch (keys image, label, index, mask, has_mask, box)."""
        images = batch["image"]
        out = model_maps(self.model, images)
        # the model's logits and maps feed every number: non-finite ones stop the run, naming the images
        check_finite(out["logits"], batch["index"], "logits")
        check_labels(batch["label"], out["logits"].shape[1], batch["index"])
        for name in self.map_names:
            check_finite(out[name], batch["index"], f"{name} map")
        probs = torch.softmax(out["logits"].float(), dim=1)
        confidence, prediction = probs.max(1)
        labels = torch.as_tensor(batch["label"], device=probs.device)
        rec: dict[str, np.ndarray] = {
            "index": torch.as_tensor(batch["index"]).cpu().numpy().astype(np.int64),
            "label": labels.cpu().numpy().astype(np.int64),
            "prediction": prediction.cpu().numpy().astype(np.int64),
            "confidence": confidence.cpu().numpy().astype(np.float64),
            "true_prob": probs.gather(1, labels[:, None])[:, 0].cpu().numpy().astype(np.float64),
        }
        for name in self.map_names:
            rec[name] = out[name].float().cpu().numpy()
        batch_size, size = images.shape[0], images.shape[-1]
        has_mask = np.asarray(torch.as_tensor(batch["has_mask"]).cpu().numpy(), dtype=bool)
        if not self.localize:
            has_mask = np.zeros(batch_size, dtype=bool)
        rec["has_mask"] = has_mask
        n_thr = len(self.iou_thresholds)
        nan = np.full(batch_size, np.nan)
        rec["object_area"] = nan.copy()
        for name in [*self.map_names, *BASELINE_MAPS]:
            rec[f"{name}_mass"] = nan.copy()
            rec[f"{name}_iou"] = np.full((batch_size, n_thr), np.nan)
            rec[f"{name}_box_iou"] = nan.copy()
            rec[f"{name}_pointing"] = nan.copy()
        if "keep" in self.map_names:
            rec["keep_iou_absolute"] = nan.copy()
        if has_mask.any():
            sel = np.flatnonzero(has_mask)
            obj = batch["mask"].detach().cpu().numpy()[sel] > 0.5
            boxes = batch["box"].detach().cpu().numpy()[sel]
            gt_boxes = [tuple(b) if b[0] >= 0 else bounding_box(o) for b, o in zip(boxes, obj)]
            rec["object_area"][sel] = obj.mean(axis=(1, 2))
            sel_t = torch.as_tensor(sel, device=images.device)
            maps: dict[str, np.ndarray] = {}
            for name in self.map_names:
                values = out[name].float()[sel_t]
                maps[name] = upsample(saliency(name, values), size).cpu().numpy().astype(np.float64)
                if name == "keep":
                    raw = upsample(values, size).cpu().numpy()
                    rec["keep_iou_absolute"][sel] = mask_iou(raw >= ABSOLUTE_KEEP, obj)
            for name in BASELINE_MAPS:  # the same for every image: computed once per grid and size
                key = (name, tuple(out["grid"]), size)
                if key not in self._baselines:
                    self._baselines[key] = baseline_saliency(name, out["grid"], size)
                maps[name] = np.broadcast_to(self._baselines[key], (len(sel), size, size))
            for name, up in maps.items():
                scores = map_scores(up, obj, gt_boxes, self.iou_thresholds, self.box_threshold)
                rec[f"{name}_mass"][sel] = scores["mass"]
                rec[f"{name}_iou"][sel] = scores["iou"]
                rec[f"{name}_box_iou"][sel] = scores["box_iou"]
                rec[f"{name}_pointing"][sel] = scores["pointing"]
        self._parts.append(rec)

    def records(self) -> dict[str, np.ndarray]:
        """Per-image arrays (image axis first) of everything seen since the last reset."""
        if not self._parts:
            raise ValueError("no images were evaluated")
        return {k: np.concatenate([p[k] for p in self._parts], axis=0) for k in self._parts[0]}

    # -- tables -------------------------------------------------------------------------------
    def compute(
        self,
        records: dict[str, np.ndarray],
        checkpoint: str,
        class_names: Sequence[str],
        seed: int = 0,
        n_boot: int = 1000,
    ) -> SparsityResult:
        """Tables of :mod:`ersm_eval.schema` from (possibly gathered) records, sorted by index."""
        order = np.argsort(records["index"], kind="stable")
        rec = {k: v[order] for k, v in records.items()}
        n = len(rec["index"])
        gated = "keep" in self.map_names
        correct = rec["prediction"] == rec["label"]
        notes = self.notes()
        localized = bool(rec["has_mask"].any())
        if self.localize and not localized:
            notes.append(NO_MASKS_NOTE)
        elif localized and not rec["has_mask"].all():
            notes.append(f"localization on the {int(rec['has_mask'].sum())} of {n} images that have an object mask or box")
        loc_info = self._localization_info(rec, localized)
        if loc_info["uninformative"]:
            notes.append(loc_info["note"])

        rows: list[dict[str, Any]] = []

        def add(map_name: str, metric: str, value, low=np.nan, high=np.nan, threshold=np.nan) -> None:
            rows.append({"checkpoint": checkpoint, "map": map_name, "metric": metric, "threshold": float(threshold),
                         "value": float(value), "ci_low": float(low), "ci_high": float(high)})

        def add_mean(map_name: str, metric: str, values, threshold=np.nan) -> None:
            values = np.asarray(values, dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) == 0:
                return
            low, high = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
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
            self._correct_vs_wrong(add, keep_rate, correct, seed, n_boot)
            add_mean("keep", "keep_entropy", entropy)
            add_mean("keep", "n_components", n_comp, threshold=ABSOLUTE_KEEP)
            add_mean("keep", "largest_component_share", largest, threshold=ABSOLUTE_KEEP)
            add_mean("keep", "neighbour_agreement", agree, threshold=ABSOLUTE_KEEP)
            add_prop("keep", "nothing_kept", n_comp == 0, threshold=ABSOLUTE_KEEP)
            per_image.update(frac_below_half=below, keep_entropy=entropy, n_components=n_comp,
                             largest_component_share=largest, neighbour_agreement=agree)
        localization = None
        if localized:
            localization = self._localization(rec, correct, checkpoint, seed, n_boot)
            # the summary's localization rows are copies of localization.csv's, in the summary's naming
            metric_names = {"mass_in_object": ("mass_in_object", np.nan), "box_iou": ("box_iou", self.box_threshold),
                            "box_gt_known": ("box_gt_known", self.box_threshold),
                            "box_accuracy": ("box_accuracy", self.box_threshold), "pointing_game": ("pointing_game", np.nan),
                            **{iou_metric(t): ("iou", t) for t in self.iou_thresholds}}
            last_iou = iou_metric(self.iou_thresholds[-1]) if self.iou_thresholds else "mass_in_object"
            for row in localization[localization["map"].isin(self.map_names)].itertuples(index=False):
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
            "checkpoint": checkpoint,
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
        for name in self.map_names:
            if name != "keep":
                table[f"{name}_mass"] = rec[f"{name}_mass"]
                table[f"{name}_iou"] = rec[f"{name}_iou"][:, self.iou_thresholds.index(0.5)] if 0.5 in self.iou_thresholds else nan
            table[f"{name}_box_iou"] = rec[f"{name}_box_iou"]

        tables = {
            "sparsity_summary.csv": pd.DataFrame(rows, columns=TABLES["sparsity_summary.csv"]),
            "per_image.csv": table,
            "per_class_keep.csv": self._per_class(rec, correct, keep_rate, checkpoint, class_names),
        }
        if localization is not None:
            tables["localization.csv"] = localization
        if gated:
            counts, edges = np.histogram(keep_rate, bins=HIST_BINS, range=(0.0, 1.0))
            tables["keep_histogram.csv"] = pd.DataFrame(
                {"checkpoint": checkpoint, "bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}
            )
        info = {
            "maps": list(self.map_names),
            "cam": "exact (linear head)" if self.model.head_is_linear else "gradient x input (approximate)",
            "localized_images": int(rec["has_mask"].sum()),
            "localization": loc_info,
            "iou_thresholds": list(self.iou_thresholds),
            "box_threshold": self.box_threshold,
            "failure_rule": {"high_confidence": HIGH_CONFIDENCE, "focus_mass": FOCUS_MASS, "primary_map": primary,
                             "fallback": "keep rate <= median keep rate -> focused"},
            "failure_counts": {k: int((failure == k).sum()) for k in ("focused", "distracted", "high_confidence")},
            "bootstrap": {"n_boot": n_boot, "seed": seed},
        }
        return SparsityResult(tables=tables, notes=notes, info=info)

    def _localization(self, rec, correct, checkpoint: str, seed: int, n_boot: int) -> pd.DataFrame:
        """localization.csv from the records: every map's scores on the images that have an object."""
        sel = rec["has_mask"]
        per_map = {
            name: per_image_metrics(rec[f"{name}_mass"][sel], rec[f"{name}_iou"][sel], rec[f"{name}_box_iou"][sel],
                                    rec[f"{name}_pointing"][sel], correct[sel], self.iou_thresholds)
            for name in [*self.map_names, *BASELINE_MAPS]
        }
        return localization_table(per_map, checkpoint, localization_metrics(self.iou_thresholds), seed, n_boot)

    def _localization_info(self, rec, localized: bool) -> dict[str, Any]:
        """summary.json's account of localization: measured or not, and whether the boxes can tell anything."""
        if not localized:
            return {"measured": False, "images": 0, "uninformative": False, "large_object_share": None,
                    "note": NO_MASKS_NOTE if self.localize else NOT_ASKED_NOTE}
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

    @staticmethod
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

    @staticmethod
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


# -- galleries ------------------------------------------------------------------------------
def select_gallery(per_image: pd.DataFrame, extra: Sequence[int] = (), first: int = 8, per_category: int = 8) -> list[int]:
    """Gallery images: the first ``first`` evaluated, up to ``per_category`` of each failure
    category (lowest indices first), and every index in ``extra`` that was evaluated."""
    table = per_image.sort_values("index")
    chosen = list(table["index"].head(first))
    for category in ("focused", "distracted", "high_confidence"):
        chosen += list(table.loc[table["failure"] == category, "index"].head(per_category))
    evaluated = set(table["index"].tolist())
    chosen += [int(i) for i in extra if int(i) in evaluated]
    return sorted({int(i) for i in chosen})


def gallery_arrays(dataset: Any, records: dict[str, np.ndarray], indices: Sequence[int], map_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of maps.npz for the chosen images (keys in :mod:`ersm_eval.schema`'s MAPS_NPZ doc).

    ``index``, ``image`` [n,S,S,3] uint8, ``label``, ``prediction``, the token maps
    ``keep`` / ``energy`` / ``cam`` [n,h,w] the model has (raw values: π, E, signed
    CAM), and ``mask`` [n,S,S] when the dataset has object masks or boxes.
    """
    position = {int(i): p for p, i in enumerate(records["index"])}
    rows = [position[int(i)] for i in indices]
    out: dict[str, np.ndarray] = {
        "index": np.asarray(indices, dtype=np.int64),
        "image": np.stack([np.asarray(dataset.image_uint8(int(i)), dtype=np.uint8) for i in indices]),
        "label": records["label"][rows].astype(np.int64),
        "prediction": records["prediction"][rows].astype(np.int64),
    }
    for name in map_names:
        out[name] = records[name][rows].astype(np.float32)
    if getattr(dataset, "has_masks", False) or getattr(dataset, "has_boxes", False):
        out["mask"] = np.stack([dataset[int(i)]["mask"].numpy().astype(np.float32) for i in indices])
    return out
