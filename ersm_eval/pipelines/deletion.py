"""The deletion pipeline: a checkpoint and a dataset name in, a result folder out."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.pipelines.common import (
    PipelineRun, ProgressBar, cache_info, dataset_batches, feature_cache, join_group, leave_group, no_progress,
    resume_store, save_result,
)

__all__ = ["run_deletion"]


def run_deletion(
    checkpoint: Path,
    dataset: str,
    settings: DeletionSettings,
    *,
    out: Path | None = None,
    overwrite: bool = False,
    split: str = "test",
    data_root: Path | None = None,
    limit: int | None = None,
    subset_seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    cache: Path | None = None,
    scores: Path | None = None,
    scores_name: str = "external",
    skip_bad_images: bool = False,
    progress: ProgressBar = no_progress,
    after: Callable[[Path], None] | None = None,
    options: dict[str, Any] | None = None,
    started: float | None = None,
    resume: bool = False,
) -> PipelineRun:
    """Deletion curves of one checkpoint on a dataset, written into ``out``.

    Loads the checkpoint (weights only), builds the dataset with the model's transform, picks
    the ``limit`` subset, precomputes backbone features (through the ``cache`` folder when
    given; feature level only), evaluates, and writes the tables and summary.json atomically.
    Under torchrun every process evaluates its share and rank 0 writes.

    Args:
        checkpoint: the checkpoint file.
        dataset: a registered dataset name.
        settings: the deletion settings (its label defaults to the checkpoint's file name stem).
        out: the output folder (default runs/deletion-<label>).
        overwrite: replace an existing folder ersm-eval wrote.
        split: the dataset split.
        data_root: the dataset's folder.
        limit: evaluate a seeded, class-stratified subset of this many images.
        subset_seed: the subset's seed.
        device: auto, cpu, cuda or cuda:N.
        batch_size: images per batch (results do not depend on it).
        workers: DataLoader worker processes.
        cache: folder of the feature cache.
        scores: a .npy file of external score maps (:func:`~ersm_eval.pipelines.scores.load_scores`).
        scores_name: the external ranking's name.
        skip_bad_images: skip unreadable images (listed) instead of stopping.
        progress: ``(total, description)`` → a context manager yielding ``advance(n)``.
        after: called with the temporary folder before it is renamed (e.g. to write report.html).
        options: the command's options, recorded in summary.json.
        started: when the command started (time.time()), for the run's timing.
        resume: go on from the images an interrupted run of the same command finished
            (:mod:`ersm_eval.resume`); the tables equal an uninterrupted run's.

    Raises:
        ConfigError: a bad option or output folder, before any work where it can be told.
    """
    from ersm_eval.api import evaluate_deletion
    from ersm_eval.context import gather_skipped, prepare
    from ersm_eval.output import check_output_dir, default_out
    from ersm_eval.pipelines.scores import load_scores

    started = time.time() if started is None else started
    settings = replace(settings, label=settings.label or Path(checkpoint).stem)
    out = out if out is not None else default_out("deletion", [settings.label])
    if cache is not None and settings.level == "input":
        raise ConfigError("--cache stores backbone features, which --level input does not use; drop one of them")
    check_output_dir(out, overwrite, inputs=[checkpoint, data_root, cache, scores])  # before any work
    setup = prepare(checkpoint, dataset, split, data_root, limit, join_group(device), subset_seed=subset_seed)
    external = {scores_name: load_scores(scores, len(setup.indices), tuple(setup.model.grid),
                                         setup.checkpoint.config.image_size)} if scores is not None else None
    features = settings.level == "feature"
    cache_of = feature_cache(cache, setup, dataset, split) if features else None
    from ersm_core.files import file_sha256

    store = resume_store(out, f"deletion-{settings.label}", setup, dataset, split, settings, resume,
                         scores_sha256=file_sha256(scores) if scores is not None else None, scores_name=scores_name)
    skipped: list[tuple[int, str]] = []
    with progress(len(setup.indices) - store.resumed, f"deletion ({settings.label})") as advance:
        batches = dataset_batches(setup, batch_size, workers, advance, skip_bad_images, skipped, features=features,
                                  cache=cache_of, done=store.done_indices)
        result = evaluate_deletion(setup.model, batches, scores=external, settings=settings,
                                   class_names=setup.checkpoint.class_names, verify=False, store=store)
    bad = gather_skipped(skipped)
    if result is not None:  # rank 0 writes
        save_result(result, out, overwrite, dict(options or {}), started, setup.describe(), after,
                    skipped_images=bad, cache=cache_info(cache_of))
        store.remove()
    leave_group()
    return PipelineRun(result, Path(out), bad, store.resumed)
