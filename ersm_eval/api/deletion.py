"""``evaluate_deletion``: deletion curves of any classifier over a loader."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ersm_core.errors import ConfigError
from ersm_eval.adapter import ModelAdapter
from ersm_eval.api.driver import (
    Progress, class_names_for, gather, model_device, needs_normalization, prepare_model, run_evaluator, run_summary,
    settings_with,
)
from ersm_eval.api.external import ScoreMaps, external_batch, external_rankings
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings, token_score_arrays
from ersm_eval.rankings import Ranking
from ersm_eval.results import EvaluationResult, ModelInfo, now

__all__ = ["evaluate_deletion"]


def evaluate_deletion(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    scores: Mapping[str, ScoreMaps] | None = None,
    settings: DeletionSettings | None = None,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    store: Any = None,
    **overrides: Any,
) -> EvaluationResult:
    """Deletion curves: accuracy as tokens are deleted in the order of each ranking.

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches ``(x, y)``, ``(x, y, extra)`` or dicts (see the module docstring), not shuffled.
        scores: external rankings, ``{name: maps}`` (tensor [n_images, h, w] or [n_images, H, W], or a
            callable ``(model, x, y) -> maps``); the highest score is deleted first.
        settings: a :class:`~ersm_eval.deletion.DeletionSettings`; keyword ``overrides`` (rankings, seeds,
            steps, soft_gate, rescale, level, fill, ...) replace its fields.
        label: the model's name in the tables (default: its class or timm name).
        class_names: names of the classes (default: ``loader.dataset.classes``, else '0', '1', ...).
        mean: normalization mean of the images (input level with ``fill='black'`` only).
        std: its standard deviation.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.
        store: a :class:`~ersm_eval.resume.RecordStore`: finished images' records are kept in it while
            the loop runs, and those of an interrupted run it holds are joined in (``--resume``).

    Returns:
        Tables deletion_curves.csv, deletion_summary.csv, deletion_tests.csv, ranking_agreement.csv
        (and whatever else the evaluator computes: insertion_curves.csv and insertion_summary.csv with
        ``insertion=True`` at ``level='input'``), the summary, and token_scores.npz with
        ``save_token_scores=True``.

    Raises:
        ConfigError: unknown settings or rankings, malformed score maps, a model that cannot be split.
        DatasetError: malformed batches, an empty loader.
    """
    started, stamp = now()
    st = settings_with(DeletionSettings, settings, overrides, "deletion")
    scores = dict(scores or {})
    extra = external_rankings(list(scores))  # this evaluation's own rankings; the registry stays as it is
    if scores:
        st = replace(st, rankings=tuple(dict.fromkeys([*st.rankings, *scores])))

    def build(batch: dict[str, Any] | None) -> DeletionEvaluator:
        images = None if batch is None else batch["image"]
        return _deletion_evaluator(model, images, st, extra, label, mean, std, verify)

    def add_scores(evaluator: DeletionEvaluator, batch: dict[str, Any], positions: np.ndarray) -> None:
        batch["scores"] = external_batch(scores, model, batch, positions, tuple(evaluator.model.grid))

    evaluator = run_evaluator(build, loader, device=model_device(model), progress=progress,
                              extend=add_scores if scores else None, store=store)
    records = gather(evaluator, store)
    if records is None:  # a torchrun process other than rank 0
        return None
    n_images = len(records["index"])
    for name, maps in scores.items():
        if not callable(maps) and len(maps) != n_images:
            raise ConfigError(f"scores[{name!r}] holds {len(maps)} maps but the loader gave {n_images} images; "
                              "give one map per image, in loader order")
    tables = evaluator.compute(records)
    description = evaluator.describe()
    description.pop("settings", None)
    description["external_rankings"] = {name: ("callable" if callable(m) else f"maps {list(np.shape(m))}")
                                         for name, m in scores.items()}
    notes = [f"ranking {name} skipped: {reason}" for name, reason in evaluator.skipped.items()]
    arrays = {}
    if evaluator.settings.save_token_scores:
        arrays["token_scores.npz"] = token_score_arrays(records, evaluator.curves, tuple(evaluator.model.grid))
    summary = run_summary("deletion", evaluator.settings.label, n_images,
                          class_names_for(class_names, loader, evaluator.n_classes), evaluator.model,
                          asdict(evaluator.settings), description, notes, started, stamp)
    found = evaluator.verdicts(tables)
    summary.chance_test, summary.verdicts = found["chance_test"], found["verdicts"]
    summary.verdict_sentences, summary.energy_diagnostics = found["sentences"], found["energy_diagnostics"]
    if "insertion" in found:  # insertion=True: its verdicts beside the run's description, its sentences beside deletion's
        summary.evaluation["insertion_verdicts"] = found["insertion"]["verdicts"]
        summary.verdict_sentences["insertion"] = found["insertion"]["sentences"]
    return EvaluationResult(tables=tables, summary=summary, arrays=arrays, records=records)


def _deletion_evaluator(model: nn.Module, images: torch.Tensor | None, st: DeletionSettings,
                        rankings: Mapping[str, Ranking], label: str | None, mean: Sequence[float] | None,
                        std: Sequence[float] | None, verify: bool) -> DeletionEvaluator:
    """The evaluator of the wrapped model, its label and normalization settled."""
    wrapped, _ = prepare_model(model, images, verify)
    if isinstance(wrapped, ModelAdapter) and (mean is not None or std is not None):
        wrapped.mean, wrapped.std = tuple(mean or ()), tuple(std or ())
    if st.level == "input" and st.fill == "black":
        needs_normalization("the black fill", tuple(wrapped.mean), tuple(wrapped.std))
    if not st.label:
        st = replace(st, label=label or ModelInfo.of(wrapped).name)
    return DeletionEvaluator(wrapped, st, rankings)
