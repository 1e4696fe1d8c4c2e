"""``evaluate_sparsity`` (also ``mask_statistics``): sparsity, coherence and localization of any
classifier's maps over a loader, with the report's gallery."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Sequence

import numpy as np
from torch import nn

from ersm_eval.api.driver import Progress, class_names_for, gather, model_device, prepare_model, run_evaluator, run_summary
from ersm_eval.localization import BOX_THRESHOLD, IOU_THRESHOLDS
from ersm_eval.results import EvaluationResult, ModelInfo, now
from ersm_eval.schema import MAPS_NPZ
from ersm_eval.sparsity import SparsityEvaluator, SparsitySettings, gallery_arrays, gallery_source, select_gallery

__all__ = ["evaluate_sparsity", "mask_statistics"]


def evaluate_sparsity(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    localize: bool = True,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    box_threshold: float = BOX_THRESHOLD,
    seed: int = 0,
    n_boot: int = 1000,
    gallery: bool = True,
    gallery_indices: Sequence[int] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    store: Any = None,
) -> EvaluationResult:
    """Sparsity, coherence and localization of the model's maps (keep and energy for ERSM, CAM for all).

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches as for :func:`evaluate_deletion`; localization needs ``mask`` (and optionally
            ``box``) in them and is skipped with a note otherwise.
        label: the model's name in the tables.
        class_names: names of the classes (per_class_keep.csv).
        localize: compare the maps with the object masks where the batches have them.
        iou_thresholds: fractions of a map's max for the mask IoU.
        box_threshold: fraction of a map's max for the box protocol.
        seed: seed of the bootstrap intervals.
        n_boot: bootstrap resamples.
        gallery: keep the images chosen for the report's galleries and write maps.npz (the loader is
            read a second time for them; a one-shot iterator gets no gallery, with a note).
        gallery_indices: indices always put in the gallery.
        mean: normalization mean, to show gallery images in their colours (else min-max scaled).
        std: its standard deviation.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.
        store: a :class:`~ersm_eval.resume.RecordStore`: finished images' records are kept in it while
            the loop runs, and those of an interrupted run it holds are joined in (``--resume``).

    Returns:
        Tables sparsity_summary.csv, per_image.csv, per_class_keep.csv (keep_histogram.csv for gated
        models), the summary, and maps.npz.
    """
    started, stamp = now()
    st = SparsitySettings(localize=localize, iou_thresholds=tuple(iou_thresholds), box_threshold=box_threshold,
                          seed=seed, n_boot=n_boot, label=label or "")

    def build(batch: dict[str, Any] | None) -> SparsityEvaluator:
        wrapped, n_classes = prepare_model(model, None if batch is None else batch["image"], verify)
        return SparsityEvaluator(wrapped, replace(st, label=st.label or ModelInfo.of(wrapped).name),
                                 class_names_for(class_names, loader, n_classes))

    evaluator = run_evaluator(build, loader, device=model_device(model), progress=progress, store=store)
    records = gather(evaluator, store)
    if records is None:  # a torchrun process other than rank 0
        return None
    wrapped = evaluator.model
    name, names = evaluator.settings.label, evaluator.class_names
    result = evaluator.result(records)
    notes = list(result.notes)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    chosen: list[int] = []
    if gallery:
        chosen = select_gallery(result.tables["per_image.csv"], gallery_indices)
        missing = sorted(set(gallery_indices) - set(chosen))
        if missing:
            notes.append(f"gallery indices {missing} were not evaluated (outside the images evaluated) and are not "
                         f"in {MAPS_NPZ}")
        images = gallery_source(loader, wrapped, records, chosen, mean, std, notes)
        if images is not None:
            arrays[MAPS_NPZ] = gallery_arrays(images, records, chosen, evaluator.map_names)
    evaluation = {**result.info, "gallery_indices": chosen}
    summary = run_summary("sparsity", name, len(records["index"]), names, wrapped, st.to_dict(), evaluation, notes,
                          started, stamp)
    return EvaluationResult(tables=result.tables, summary=summary, arrays=arrays, records=records)


mask_statistics = evaluate_sparsity  # the former name
