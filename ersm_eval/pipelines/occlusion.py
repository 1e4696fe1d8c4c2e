"""The occlusion pipeline: checkpoints and a dataset name in, one result folder comparing them out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ersm_core.errors import DatasetError
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.common import (
    PipelineRun, ProgressBar, dataset_batches, join_group, leave_group, no_progress, resume_store, save_result,
)

__all__ = ["run_occlusion", "same_images"]


def run_occlusion(
    checkpoints: Sequence[Path],
    dataset: str,
    settings: OcclusionSettings,
    labels: Sequence[str],
    *,
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
    notify: Callable[[str], None] | None = None,
    after: Callable[[Path], None] | None = None,
    options: dict[str, Any] | None = None,
    started: float | None = None,
    resume: bool = False,
) -> PipelineRun:
    """Occlusion of every checkpoint under identical occluders on the same images, one folder.

    Args:
        checkpoints: the checkpoint files; the first is the reference of ``diff_auc_to_first``.
        dataset: a registered dataset name.
        settings: fills, patterns, severities, seeds, grid size.
        labels: one distinct name per checkpoint.
        out: the output folder (default runs/occlusion-<labels joined by -vs->).
        notify: called with each note as it arises (skipped patterns, another image size).
        overwrite, split, data_root, limit, subset_seed, device, batch_size, workers, skip_bad_images,
        progress, after, options, started, resume: as for :func:`~ersm_eval.pipelines.run_deletion`.

    Raises:
        ConfigError: a bad option or output folder; DatasetError: checkpoints that see other images.
    """
    from ersm_eval import distributed
    from ersm_eval.api import combine_occlusion, evaluate_occlusion
    from ersm_eval.context import gather_skipped, prepare
    from ersm_eval.output import check_output_dir, default_out

    started = time.time() if started is None else started
    tell = notify if notify is not None and distributed.is_main() else (lambda note: None)
    out = out if out is not None else default_out("occlusion", labels)
    check_output_dir(out, overwrite, inputs=[*checkpoints, data_root])  # before any work
    device_name = join_group(device)
    results, described, bad, notes, reference, stores = [], [], [], [], None, []
    for path, name in zip(checkpoints, labels):
        setup = prepare(path, dataset, split, data_root, limit, device_name, subset_seed=subset_seed)
        reference, note = same_images(setup, reference, path, name)
        if note:
            notes.append(note)
            tell(note)
        skipped: list[tuple[int, str]] = []
        store = resume_store(out, f"occlusion-{name}", setup, dataset, split, settings, resume, batch_size=batch_size)
        stores.append(store)
        with progress(len(setup.indices) - store.resumed, f"occlusion ({name})") as advance:
            batches = dataset_batches(setup, batch_size, workers, advance, skip_bad_images, skipped,
                                      done=store.done_indices)
            result = evaluate_occlusion(setup.model, batches, settings=settings, label=name, batch_size=batch_size,
                                        class_names=setup.checkpoint.class_names, verify=False, store=store)
        for skipped_note in (result.summary.notes if result is not None else []):
            tell(skipped_note)
        skipped_all = gather_skipped(skipped)
        bad = bad if described else skipped_all  # the same files fail for every checkpoint
        results.append(result)
        described.append({"label": name, **setup.describe()})
    combined = None
    if results[0] is not None:  # rank 0 writes
        combined = combine_occlusion(results)
        combined.summary.notes = [*combined.summary.notes, *notes]
        save_result(combined, out, overwrite, dict(options or {}), started, described[0], after, skipped_images=bad,
                    checkpoints=described)
        stores[0].remove()
    leave_group()
    return PipelineRun(combined, Path(out), bad, sum(store.resumed for store in stores))


def same_images(setup: Any, reference: tuple | None, path: Path, name: str) -> tuple[tuple, str | None]:
    """Later checkpoints must see the first one's images (reference: its dataset length, classes,
    image size and indices); another image size is allowed, with a note (returned)."""
    data = setup.dataset
    size = data.transform.image_size
    if reference is None:
        return (len(data), list(data.classes), size, list(setup.indices)), None
    if (len(data), list(data.classes), list(setup.indices)) != (reference[0], reference[1], reference[3]):
        raise DatasetError(
            f"checkpoint {path} sees {len(data)} images of {len(data.classes)} classes where the first sees "
            f"{reference[0]} of {len(reference[1])}; occlusion compares checkpoints trained on the same dataset"
        )
    if size == reference[2]:
        return reference, None
    return reference, (f"{name} uses {size} px images where the first checkpoint uses {reference[2]} px: its occluder "
                       "masks were generated at its own size from the same seeds")
