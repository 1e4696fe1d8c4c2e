"""What every ``evaluate_*`` function shares: the one driver loop (:func:`run_evaluator`), the
model's preparation, gathering under torchrun, settings with keyword overrides, and the summary."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ersm_core.errors import ConfigError, DatasetError, ERSMError
from ersm_core.versions import versions
from ersm_eval.adapter import ModelAdapter, wrap
from ersm_eval.api.batches import DatasetBatches, iterate_source
from ersm_eval.context import Progress
from ersm_eval.contract import Evaluator
from ersm_eval.results import ModelInfo, RunSummary

__all__ = ["Progress", "run_evaluator", "gather", "prepare_model", "model_device", "class_names_for", "settings_with",
           "needs_normalization", "run_summary"]

Factory = Callable[[dict[str, Any] | None], Evaluator]  # builds the evaluator from the first batch (None: not needed)
Extend = Callable[[Evaluator, dict[str, Any], np.ndarray], None]  # adds to a batch before its update


def run_evaluator(evaluator: Evaluator | Factory, loader: Iterable[Any], *, device: torch.device | str = "cpu",
                  progress: Progress | None = None, extend: Extend | None = None, store: Any = None) -> Evaluator:
    """Feed every batch of ``loader`` to the evaluator: the one loop of every evaluation.

    Args:
        evaluator: an :class:`~ersm_eval.contract.Evaluator`, or a factory that builds one from the
            first batch (called with None before any batch for :class:`DatasetBatches`, whose model
            needs no look at an image).
        loader: a loader of ``(x, y)``, ``(x, y, extra)`` or dict batches, or :class:`DatasetBatches`.
        device: where a plain loader's batches go.
        progress: called with the number of images of each batch evaluated.
        extend: called with (evaluator, batch, positions) before each update (e.g. external scores).
        store: a :class:`~ersm_eval.resume.RecordStore` that keeps the finished images' records
            (written every few seconds, and when the loop stops early), so a killed run can resume.

    Returns:
        The evaluator, holding the records of this process's batches.

    Raises:
        DatasetError: the loader gave no batch at all.
    """
    built: Evaluator | None = evaluator if isinstance(evaluator, Evaluator) else None
    if built is None and isinstance(loader, DatasetBatches):
        built = evaluator(None)
    try:
        for batch, positions in iterate_source(loader, device):
            if built is None:
                built = evaluator(batch)
            if extend is not None:
                extend(built, batch, positions)
            built.update(batch)
            if store is not None and store.due():  # records are joined only when a chunk is written
                store.flush(built.records(), force=True)
            if progress is not None:
                progress(len(positions))
    except BaseException:
        if store is not None and built is not None and built.n_images:  # keep what is finished (Ctrl-C, SIGTERM)
            store.flush(built.records(), force=True)
        raise
    if built is None:
        raise DatasetError("the loader gave no images, so there is nothing to evaluate")
    return built


def gather(evaluator: Evaluator, store: Any = None) -> dict[str, np.ndarray] | None:
    """Every process's records on rank 0, sorted by index (None on the other ranks); a process
    whose share held no image contributes none. With a resume ``store``, the records an
    interrupted run finished are joined in on rank 0."""
    from ersm_eval import distributed

    own = evaluator.records() if evaluator.n_images else None
    if store is None or store.done is None:
        return distributed.gather_records(own)
    gathered = distributed.gather_records(own) if own is not None or distributed.is_distributed() else None
    return store.merged(gathered) if distributed.is_main() else None


def prepare_model(model: nn.Module, images: torch.Tensor | None, verify: bool) -> tuple[Any, int]:
    """The wrapped model in eval mode, its grid fixed by a look at one image; and the class count.

    Without images (feature batches) the model must be the project's own (its grid is known)."""
    wrapped = wrap(model)
    wrapped.eval()
    if images is None:
        if isinstance(wrapped, ModelAdapter):
            raise ConfigError("feature batches need the project's own model; pass images for other models")
        return wrapped, int(wrapped.config.num_classes)
    with torch.no_grad():
        probe = images[: min(2, images.shape[0])]
        try:
            if isinstance(wrapped, ModelAdapter):
                wrapped.forward_features(probe)
                if verify:
                    wrapped.check_split(probe)
            logits = wrapped(probe)
        except (RuntimeError, ValueError, TypeError) as err:
            if isinstance(err, ERSMError):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"the model cannot run on the loader's images of shape {tuple(images.shape[1:])} "
                              f"(channels, height, width): {first}") from None
    return wrapped, int(logits.shape[1])


def class_names_for(given: Sequence[str] | None, loader: Any, n_classes: int) -> list[str]:
    """The class names: ``given``, else the loader's dataset's ``classes``, else '0', '1', ..."""
    if given is not None:
        names = [str(c) for c in given]
    else:
        names = [str(c) for c in getattr(getattr(loader, "dataset", None), "classes", []) or []]
        if len(names) != n_classes:
            names = [str(k) for k in range(n_classes)]
    if len(names) != n_classes:
        raise ConfigError(f"class_names has {len(names)} names but the model has {n_classes} classes")
    return names


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def settings_with(cls: type, given: Any, overrides: dict[str, Any], what: str) -> Any:
    """Settings of ``cls``: ``given`` (or the defaults) with keyword ``overrides``; unknown names raise."""
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} setting{'s' if len(unknown) > 1 else ''} {unknown}; valid: {', '.join(valid)}")
    if given is None:
        return cls(**overrides)
    if not isinstance(given, cls):
        raise ConfigError(f"settings= takes a {cls.__name__}, got {type(given).__name__}")
    return replace(given, **overrides) if overrides else given


def needs_normalization(what: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Raise when a fill needs the images' normalization and it is unknown."""
    if not mean or not std:
        raise ConfigError(
            f"{what} needs the images' normalization mean and std (pixel value 0 in normalized space); "
            "pass mean=(...) and std=(...) (e.g. ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225))"
        )


def run_summary(command: str, label: str, n_images: int, class_names: list[str], model: Any, settings: dict[str, Any],
             evaluation: dict[str, Any], notes: list[str], started: float, stamp: str) -> RunSummary:
    """The run's summary.json record (options and provenance are added by the caller)."""
    return RunSummary(
        command=command, label=label, n_images=int(n_images), class_names=class_names, model=ModelInfo.of(model),
        settings=settings, evaluation=evaluation, notes=notes, versions=versions(), started=stamp,
        run_seconds=round(time.time() - started, 3),
    )
