"""What every pipeline shares: the process group, the dataset's batches, the feature cache, the
progress callback, and writing the result folder with its summary.json."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from ersm_eval.api.batches import DatasetBatches
from ersm_eval.context import EvalSetup, Progress, iterate_batches
from ersm_eval.results import EvaluationResult

__all__ = ["ProgressBar", "no_progress", "PipelineRun", "join_group", "leave_group", "dataset_batches",
           "feature_cache", "cache_info", "save_result", "resume_store"]

ProgressBar = Callable[[int, str], ContextManager[Progress]]  # (total images, description) -> bar yielding advance


@contextmanager
def no_progress(total: int, description: str) -> Iterator[Progress]:
    """A progress bar that shows nothing (the pipelines' default)."""
    yield lambda n: None


@dataclass
class PipelineRun:
    """What a pipeline leaves: the result (None on torchrun processes other than rank 0, which
    write nothing), the folder written and the images skipped as unreadable (all processes)."""

    result: EvaluationResult | None
    out: Path
    skipped_images: list[dict[str, Any]] = field(default_factory=list)
    resumed_images: int = 0  # images whose records an interrupted run had finished (--resume)


def join_group(device: str) -> str:
    """Join torchrun's process group (when started by torchrun) and return this process's device."""
    from ersm_core.device import select_device
    from ersm_eval import distributed

    chosen = select_device(device)
    distributed.init_from_env(chosen)
    return str(distributed.local_device(chosen))


def leave_group() -> None:
    """Leave torchrun's process group (no-op in a single process)."""
    from ersm_eval import distributed

    distributed.shutdown()


def dataset_batches(setup: EvalSetup, batch_size: int, workers: int, advance: Progress, skip_bad_images: bool,
                    skipped: list[tuple[int, str]], features: bool = False, cache: Any = None,
                    done: set[int] | frozenset[int] = frozenset()) -> DatasetBatches:
    """This process's batches of the evaluated images, as :class:`~ersm_eval.api.DatasetBatches`.

    Images in ``done`` (finished by an interrupted run, see :mod:`ersm_eval.resume`) are not
    loaded again; the batches' ``indices`` still list every evaluated image.

    ``features``: precomputed backbone features (feature-level deletion), through ``cache``
    (an :class:`ersm_eval.cache.FeatureCache`) when given; unreadable images are skipped into
    ``skipped`` with ``skip_bad_images``, else stop the run.
    """
    data = setup.dataset
    bad = {"skip_bad_images": skip_bad_images, "skipped": skipped}
    todo = [i for i in setup.indices if i not in done] if done else setup.indices
    if features:
        from ersm_eval.features import feature_batches

        batches = feature_batches(setup.model, data, todo, batch_size, workers, setup.device, cache, advance, **bad)
    else:
        batches = iterate_batches(data, todo, batch_size, workers, setup.device, advance, **bad)
    return DatasetBatches(batches, setup.indices, has_masks=bool(data.has_masks or data.has_boxes), dataset=data,
                          mean=tuple(data.transform.mean), std=tuple(data.transform.std))


def feature_cache(folder: Path | None, setup: EvalSetup, dataset: str, split: str) -> Any:
    """The :class:`~ersm_eval.cache.FeatureCache` of this checkpoint, dataset, split and transform (None
    without a folder)."""
    if folder is None:
        return None
    from ersm_eval.cache import FeatureCache, cache_key

    return FeatureCache(folder, cache_key(setup.checkpoint.sha256, dataset, split, asdict(setup.dataset.transform),
                                          setup.options))


def cache_info(cache: Any) -> dict[str, Any] | None:
    """The cache's use for summary.json (None without a cache)."""
    if cache is None:
        return None
    return {"dir": str(cache.dir), "hits": cache.hits, "misses": cache.misses, "rebuilt": cache.rebuilt}


def save_result(result: EvaluationResult, out: Path, overwrite: bool, options: dict[str, Any], started: float,
                source: dict[str, Any] | None = None, after: Callable[[Path], None] | None = None,
                **fields: Any) -> Path:
    """Record the command's options, provenance (``source``: ``EvalSetup.describe()``) and run
    information in the result's summary, and write the folder (atomically; ``after`` is called
    with the temporary folder before it is renamed, e.g. to write report.html)."""
    from ersm_eval import distributed
    from ersm_eval.output import run_info

    summary = result.summary
    if source is not None:
        summary.describe_source(source)
    info = run_info(started)
    summary.options, summary.world_size, summary.command_line = options, distributed.world_size(), info["command_line"]
    summary.versions, summary.started, summary.run_seconds = info["versions"], info["started"], info["run_seconds"]
    for name, value in fields.items():
        setattr(summary, name, value)
    return result.save(out, overwrite, after=after)


def resume_store(out: Path, part: str, setup: EvalSetup, dataset: str, split: str, settings: Any, resume: bool,
                 **extra: Any) -> Any:
    """The :class:`~ersm_eval.resume.RecordStore` of one evaluation of a run writing ``out``, keyed by
    the checkpoint's hash, the dataset, its transform and options, the images and the settings
    (``extra``: anything else that decides the records, e.g. an external score file's hash)."""
    from ersm_eval import distributed
    from ersm_eval.resume import RecordStore

    key = {"part": part, "checkpoint_sha256": setup.checkpoint.sha256, "dataset": dataset, "split": split,
           "transform": asdict(setup.dataset.transform), "options": setup.options,
           "settings": asdict(settings) if hasattr(settings, "__dataclass_fields__") else settings, **extra}
    store = RecordStore(out, part, key, setup.indices, resume, rank=distributed.rank())
    distributed.barrier()  # rank 0 discards an old store before any process writes
    return store
