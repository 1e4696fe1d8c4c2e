"""``evaluate_occlusion``: accuracy under seeded occluders of any classifier over a loader, and
:func:`combine_occlusion` for several models on the same images."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ersm_core.errors import ConfigError
from ersm_eval.api.driver import (
    Progress, class_names_for, gather, model_device, needs_normalization, prepare_model, run_evaluator, run_summary,
    settings_with,
)
from ersm_eval.occlusion import OcclusionEvaluator, OcclusionSettings, compute_occlusion, resolve_patterns
from ersm_eval.results import EvaluationResult, ModelInfo, now

__all__ = ["evaluate_occlusion", "combine_occlusion"]


def evaluate_occlusion(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    settings: OcclusionSettings | None = None,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 64,
    verify: bool = True,
    progress: Progress | None = None,
    store: Any = None,
    **overrides: Any,
) -> EvaluationResult:
    """Occlusion stress test: accuracy under seeded occluders (fills × patterns × severities).

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches as for :func:`evaluate_deletion`; square images. The ``object`` and
            ``background`` patterns need object masks (``mask`` in the batches) and are skipped
            with a note without them.
        settings: an :class:`~ersm_eval.occlusion.OcclusionSettings`; keyword ``overrides`` (fills,
            patterns, severities, seeds, grid_size) replace its fields.
        label: the model's name in the tables.
        class_names: names of the classes.
        mean: normalization mean of the images (the ``black`` fill only).
        std: its standard deviation.
        batch_size: occluded images per forward pass.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.
        store: a :class:`~ersm_eval.resume.RecordStore`: finished images' records are kept in it while
            the loop runs, and those of an interrupted run it holds are joined in (``--resume``).

    Returns:
        Tables occlusion.csv and occlusion_summary.csv, and the summary.
    """
    started, stamp = now()
    config = settings_with(OcclusionSettings, settings, overrides, "occlusion")
    notes: list[str] = []
    n_classes = [0]

    def build(batch: dict[str, Any] | None) -> OcclusionEvaluator:
        if batch is None:  # DatasetBatches: the project's model, the dataset says whether it has masks
            has_masks, images = bool(loader.has_masks), None
            img_mean, img_std = mean or loader.mean or None, std or loader.std or None
        else:
            has_masks, images, img_mean, img_std = bool(batch["has_mask"].any()), batch["image"], mean, std
        evaluator, skipped, n_classes[0] = _occlusion_evaluator(model, images, has_masks, config, img_mean, img_std,
                                                                batch_size, verify, label)
        notes.extend(skipped)
        return evaluator

    evaluator = run_evaluator(build, loader, device=model_device(model), progress=progress, store=store)
    records = gather(evaluator, store)
    if records is None:  # a torchrun process other than rank 0
        return None
    wrapped = evaluator.model
    name = evaluator.label
    n_images = len(records["index"])
    tables = evaluator.compute(records)
    evaluation = {"patterns_run": list(evaluator.patterns), "forward_passes": evaluator.forward_count(n_images),
                  "severity": "area fraction of the image; object/background: fraction of the object's/background's pixels"}
    summary = run_summary("occlusion", name, n_images, class_names_for(class_names, loader, n_classes[0]), wrapped,
                          config.to_dict(), evaluation, notes, started, stamp)
    return EvaluationResult(tables=tables, summary=summary, records=records)


def _occlusion_evaluator(model: nn.Module, images: torch.Tensor | None, has_masks: bool, config: OcclusionSettings,
                         mean: Any, std: Any, batch_size: int, verify: bool,
                         label: str | None) -> tuple[OcclusionEvaluator, list[str], int]:
    """(the evaluator of the wrapped model, notes on skipped patterns, the class count)."""
    wrapped, n_classes = prepare_model(model, images, verify)
    img_mean = tuple(mean) if mean is not None else tuple(wrapped.mean)
    img_std = tuple(std) if std is not None else tuple(wrapped.std)
    if "black" in config.fills:
        needs_normalization("the black fill", img_mean, img_std)
    active, skipped = resolve_patterns(config.patterns, has_masks, "the loader")
    channels = 3 if images is None else images.shape[1]
    evaluator = OcclusionEvaluator(wrapped, config, img_mean or (0.0,) * channels, img_std or (1.0,) * channels,
                                   active, batch_size, label or ModelInfo.of(wrapped).name)
    return evaluator, list(skipped.values()), n_classes


def combine_occlusion(results: Sequence[EvaluationResult]) -> EvaluationResult:
    """One occlusion result for several models that saw the same images and occluders.

    The tables compare every model with the first (``diff_auc_to_first``); the summary is the
    first's, with ``labels`` naming them all.

    Raises:
        ConfigError: results of other commands, repeated labels, or different settings.
    """
    results = list(results)
    labels = [r.summary.label for r in results]
    if not results or any(r.summary.command != "occlusion" for r in results):
        raise ConfigError("combine_occlusion takes results of evaluate_occlusion")
    if len(set(labels)) < len(labels):
        raise ConfigError(f"the models' labels must differ, got {labels}; pass label= to evaluate_occlusion")
    first = results[0].summary
    if any(r.summary.settings != first.settings for r in results):
        raise ConfigError("occlusion results to combine must share their settings (fills, patterns, severities, seeds)")
    config = OcclusionSettings.from_dict(first.settings)
    active = first.evaluation["patterns_run"]
    curves, table = compute_occlusion({r.summary.label: r.records for r in results}, config, active)
    summary = replace(first, labels=labels, label=labels[0] if len(labels) == 1 else " vs ".join(labels),
                      notes=list(dict.fromkeys(n for r in results for n in r.summary.notes)),
                      run_seconds=round(sum(r.summary.run_seconds for r in results), 3))
    return EvaluationResult(tables={"occlusion.csv": curves, "occlusion_summary.csv": table}, summary=summary,
                            records={})
