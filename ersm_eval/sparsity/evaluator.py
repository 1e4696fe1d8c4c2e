"""The sparsity evaluator: update → records → compute over one model's maps.

``update(batch)`` stores small per-image records (token maps [h, w], prediction, and
the localization numbers of each map against the object mask), ``records()`` returns
them as numpy arrays with the image axis first (what
:func:`ersm_eval.distributed.gather_records` gathers), and ``compute(records)``
returns the tables of :mod:`ersm_eval.sparsity.tables`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ersm_core.data.boxes import bounding_box
from ersm_eval.context import check_finite, check_labels
from ersm_eval.localization import map_scores, mask_iou
from ersm_eval.maps import BASELINE_MAPS, MAP_NAMES, baseline_saliency, model_maps, saliency, upsample
from ersm_eval.records import concat_records
from ersm_eval.sparsity.settings import NO_MASKS_NOTE, NOT_ASKED_NOTE, SparsitySettings
from ersm_eval.sparsity.statistics import ABSOLUTE_KEEP
from ersm_eval.sparsity.tables import SparsityResult, sparsity_tables

__all__ = ["SparsityEvaluator"]


class SparsityEvaluator:
    """Keep statistics, coherence and localization of a model's maps over a dataset.

    Args:
        model: an :class:`~ersm_core.model.ERSMModel` or a wrapped model, in eval mode.
        settings: localization, thresholds, bootstrap and label (:class:`SparsitySettings`).
        class_names: names of the classes (default '0', '1', ... for the model's classes).
    """

    def __init__(self, model: Any, settings: SparsitySettings | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.model = model
        self.settings = settings = settings if settings is not None else SparsitySettings()
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.localize = settings.localize
        self.iou_thresholds = settings.iou_thresholds
        self.box_threshold = settings.box_threshold
        self.map_names = [m for m in MAP_NAMES if (m != "keep" or model.has_gate) and (m != "energy" or model.has_energy)]
        self.reset()

    def reset(self) -> None:
        """Forget every record."""
        self._parts: list[dict[str, np.ndarray]] = []
        self._baselines: dict[tuple, np.ndarray] = {}
        self._n_classes = 0

    @property
    def n_images(self) -> int:
        """Images added since the last reset."""
        return sum(len(p["index"]) for p in self._parts)

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
        self._n_classes = int(out["logits"].shape[1])
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
        """Per-image arrays (image axis first) of everything seen since the last reset.

        Raises:
            DatasetError: no image was added (:func:`ersm_eval.records.no_images_error`).
        """
        return concat_records(self._parts, "sparsity")

    def compute(self, records: dict[str, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
        """The tables of ``records`` in any order (default: this evaluator's own), keyed by file name."""
        return self.result(records).tables

    def result(self, records: dict[str, np.ndarray] | None = None) -> SparsityResult:
        """The tables with the notes (what could not be measured) and the information for summary.json."""
        rec = self.records() if records is None else records
        return sparsity_tables(rec, self.map_names, self.settings, self._class_names(), self.notes(),
                               bool(self.model.head_is_linear))

    def _class_names(self) -> list[str]:
        if self.class_names is not None:
            return self.class_names
        config = getattr(self.model, "config", None)
        n = int(getattr(config, "num_classes", 0) or 0) or self._n_classes
        return [str(k) for k in range(n)]
