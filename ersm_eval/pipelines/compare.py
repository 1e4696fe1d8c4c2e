"""The comparison pipeline: deletion, occlusion and sparsity of several checkpoints on the same
images, each saved into a sub-folder of one (temporary) folder, ready for one comparative report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.common import ProgressBar, dataset_batches, join_group, no_progress, save_result

__all__ = ["SKIPPABLE", "compare_evaluations", "check_skip", "check_same_classes"]

SKIPPABLE = ("occlusion", "sparsity")  # deletion is the comparison's core and always runs


def compare_evaluations(
    folder: Path,
    checkpoints: Sequence[Path],
    labels: Sequence[str],
    dataset: str,
    deletion: DeletionSettings,
    occlusion: OcclusionSettings,
    *,
    skip: Sequence[str] = (),
    split: str = "test",
    data_root: Path | None = None,
    limit: int | None = None,
    subset_seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    progress: ProgressBar = no_progress,
    options: dict[str, Any] | None = None,
) -> list[Path]:
    """Evaluate every checkpoint and save each result into a sub-folder of ``folder``.

    Sub-folders: deletion-<label>, sparsity-<label> (unless skipped) and one occlusion folder for
    all checkpoints together. No report is written (the caller renders the folders).

    Args:
        folder: the (temporary) output folder, which the caller owns.
        checkpoints: the checkpoint files, trained on the same classes.
        labels: one distinct name per checkpoint.
        dataset: a registered dataset name.
        deletion: the deletion settings (the label is each checkpoint's).
        occlusion: the occlusion settings.
        skip: evaluations to leave out (occlusion, sparsity).
        options: the command's options, recorded in each summary.json.
        split, data_root, limit, subset_seed, device, batch_size, workers, progress: as for
            :func:`~ersm_eval.pipelines.run_deletion`.

    Returns:
        The sub-folders written, in report order.
    """
    from ersm_eval.api import combine_occlusion, evaluate_deletion, evaluate_occlusion, evaluate_sparsity

    skip = check_skip(skip)
    check_same_classes(checkpoints)
    run = _Runner(dataset, split, data_root, limit, join_group(device), subset_seed, batch_size, workers, progress,
                  dict(options or {}))
    folders, occluded = [], []
    for ckpt, label in zip(checkpoints, labels):
        settings = replace(deletion, label=label)
        folders.append(run(folder / f"deletion-{label}", ckpt, label, True, lambda model, batches, names: evaluate_deletion(
            model, batches, settings=settings, class_names=names, verify=False)))
        if "occlusion" not in skip:
            occluded.append(run(None, ckpt, label, False, lambda model, batches, names: evaluate_occlusion(
                model, batches, settings=occlusion, label=label, class_names=names, batch_size=batch_size,
                verify=False)))
        if "sparsity" not in skip:
            folders.append(run(folder / f"sparsity-{label}", ckpt, label, False,
                               lambda model, batches, names: evaluate_sparsity(
                                   model, batches, label=label, class_names=names, verify=False)))
    if occluded:
        folders.append(run.save(folder / "occlusion", combine_occlusion([r for r, _ in occluded]), occluded[0][1],
                                checkpoints=[source for _, source in occluded]))
    return folders


def check_skip(skip: Sequence[Any]) -> tuple[str, ...]:
    """The evaluations to leave out, by name (choices of an Enum by value); others raise ConfigError."""
    names = tuple(dict.fromkeys(getattr(s, "value", s) for s in skip or ()))
    unknown = [n for n in names if n not in SKIPPABLE]
    if unknown:
        raise ConfigError(f"--skip takes {' or '.join(SKIPPABLE)}, got {', '.join(unknown)}")
    return names


def check_same_classes(checkpoints: Sequence[Path], loaded: Sequence[Any] | None = None) -> None:
    """Compared models must name the same classes in the same order (they are scored on the same
    images and labels); checked before any work, naming the first difference.

    ``loaded``: the checkpoints already loaded (:func:`~ersm_core.checkpoint.load_checkpoint`), in order,
    so that they are not read again."""
    from ersm_core.checkpoint import load_checkpoint
    from ersm_core.data.base import first_class_difference

    names_of = [c.class_names for c in loaded] if loaded is not None else None
    first = names_of[0] if names_of else load_checkpoint(checkpoints[0]).class_names
    for position, path in enumerate(checkpoints[1:], start=1):
        names = names_of[position] if names_of else load_checkpoint(path).class_names
        if list(names) != list(first):
            where = first_class_difference(first, names, str(checkpoints[0]), str(path))
            raise ConfigError(
                f"compare needs checkpoints trained on the same classes: {checkpoints[0]} has {len(first)} and {path} "
                f"has {len(names)} ({where}); compare models of one dataset")


class _Runner:
    """One evaluation of one checkpoint on the comparison's images, saved into a sub-folder."""

    def __init__(self, dataset: str, split: str, data_root: Path | None, limit: int | None, device: str,
                 subset_seed: int, batch_size: int, workers: int, progress: ProgressBar, options: dict[str, Any]):
        self.where = (dataset, split, data_root, limit, device)
        self.subset_seed, self.batch_size, self.workers, self.progress = subset_seed, batch_size, workers, progress
        self.options = options

    def __call__(self, folder: Path | None, checkpoint: Path, label: str, features: bool,
                 evaluate: Callable[..., Any]) -> Any:
        """Evaluate; save into ``folder`` and return it, or (folder None) return (result, provenance)."""
        from ersm_eval.context import prepare

        setup = prepare(checkpoint, *self.where, subset_seed=self.subset_seed)
        with self.progress(len(setup.indices), f"{folder.name if folder else 'occlusion'} ({label})") as advance:
            batches = dataset_batches(setup, self.batch_size, self.workers, advance, False, [], features=features)
            result = evaluate(setup.model, batches, setup.checkpoint.class_names)
        source = {"label": label, **setup.describe()}
        return (result, source) if folder is None else self.save(folder, result, source)

    def save(self, folder: Path, result: Any, source: dict, **fields: Any) -> Path:
        """Write one sub-folder (no report: the comparison has one for all)."""
        options = {**self.options, "checkpoint": source["checkpoint"], "label": result.summary.label}
        save_result(result, folder, False, options, time.time() - result.summary.run_seconds, source, **fields)
        return folder
