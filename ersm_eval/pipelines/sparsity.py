"""The sparsity pipeline: a checkpoint and a dataset name in, a result folder out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ersm_core.errors import ConfigError
from ersm_eval.pipelines.common import (
    PipelineRun, ProgressBar, dataset_batches, join_group, leave_group, no_progress, resume_store, save_result,
)

__all__ = ["run_sparsity", "add_map_randomization"]


def run_sparsity(
    checkpoint: Path,
    dataset: str,
    *,
    label: str | None = None,
    localize: bool = True,
    seed: int = 0,
    gallery_indices: Sequence[int] = (),
    out: Path | None = None,
    overwrite: bool = False,
    split: str = "test",
    data_root: Path | None = None,
    limit: int | None = None,
    subset_seed: int = 0,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    skip_bad_images: bool = False,
    progress: ProgressBar = no_progress,
    randomization: bool = True,
    after: Callable[[Path], None] | None = None,
    options: dict[str, Any] | None = None,
    started: float | None = None,
    resume: bool = False,
) -> PipelineRun:
    """Sparsity, coherence and localization of one checkpoint's maps on a dataset, written into ``out``.

    Args:
        checkpoint: the checkpoint file.
        dataset: a registered dataset name.
        label: the model's name in the tables (default: the checkpoint's file name stem).
        localize: compare the maps with the dataset's object masks or boxes.
        seed: seed of the bootstrap intervals.
        gallery_indices: dataset indices always stored in maps.npz.
        out: the output folder (default runs/sparsity-<label>).
        overwrite, split, data_root, limit, subset_seed, device, batch_size, workers, skip_bad_images,
        progress, after, options, started, resume: as for :func:`~ersm_eval.pipelines.run_deletion`.
        randomization: also run the randomization check of the maps (map_randomization.csv: each map's
            per-image Spearman correlation with itself after re-initializing the head, the spatial module
            and the backbone's last stage, cumulatively; :func:`ersm_eval.randomization.map_randomization`).

    Raises:
        ConfigError: a bad option or output folder, before any work where it can be told.
    """
    from ersm_eval.api import evaluate_sparsity
    from ersm_eval.context import gather_skipped, prepare
    from ersm_eval.output import check_output_dir, default_out

    started = time.time() if started is None else started
    label = label or Path(checkpoint).stem
    out = out if out is not None else default_out("sparsity", [label])
    if any(i < 0 for i in gallery_indices):
        raise ConfigError(f"--gallery-indices are dataset indices (0 or more), got {list(gallery_indices)}")
    check_output_dir(out, overwrite, inputs=[checkpoint, data_root])  # before any work
    setup = prepare(checkpoint, dataset, split, data_root, limit, join_group(device), subset_seed=subset_seed)
    store = resume_store(out, f"sparsity-{label}", setup, dataset, split,
                         {"localize": localize, "seed": seed, "gallery_indices": list(gallery_indices)}, resume)
    skipped: list[tuple[int, str]] = []
    with progress(len(setup.indices) - store.resumed, f"sparsity ({label})") as advance:
        batches = dataset_batches(setup, batch_size, workers, advance, skip_bad_images, skipped, done=store.done_indices)
        result = evaluate_sparsity(setup.model, batches, label=label, class_names=setup.checkpoint.class_names,
                                   localize=localize, seed=seed, gallery_indices=list(gallery_indices), verify=False,
                                   store=store)
    if randomization:
        add_map_randomization(setup, result, label, seed, batch_size, workers, skip_bad_images, progress)
    bad = gather_skipped(skipped)
    if result is not None:  # rank 0 writes
        save_result(result, out, overwrite, dict(options or {}), started, setup.describe(), after, skipped_images=bad)
        store.remove()
    leave_group()
    return PipelineRun(result, Path(out), bad, store.resumed)


def add_map_randomization(setup: Any, result: Any, label: str, seed: int, batch_size: int, workers: int,
                         skip_bad_images: bool, progress: ProgressBar) -> None:
    """Add map_randomization.csv (keep, energy and CAM maps; three cumulative steps) to ``result``, reading
    the images a second time; under torchrun it is skipped with a note (each process holds a share only)."""
    from ersm_eval.distributed import is_distributed
    from ersm_eval.randomization import map_randomization

    if is_distributed():
        if result is not None:
            result.summary.notes.append("no map_randomization.csv: the randomization check runs in one process "
                                        "only (run sparsity without torchrun for it)")
        return
    with progress(len(setup.indices), f"randomization check ({label})") as advance:
        batches = dataset_batches(setup, batch_size, workers, advance, skip_bad_images, [])
        table = map_randomization(setup.model, batches.batches, checkpoint=label, boot_seed=seed, seed=seed)
    if result is not None:
        result.tables["map_randomization.csv"] = table
        result.summary.notes.extend(table.attrs.get("notes", []))
