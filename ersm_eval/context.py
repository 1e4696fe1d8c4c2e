"""Shared set-up of an evaluation: checkpoint, dataset with the model's transform, image
selection, device, and the batch loop (sharded across processes under torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ersm_core.checkpoint import LoadedCheckpoint, load_checkpoint
from ersm_core.data import ERSMDataset, build_dataset, model_transform
from ersm_core.data.base import first_class_difference
from ersm_core.data.subset import dataset_labels, stratified_subset, subset_record
from ersm_core.device import select_device
from ersm_core.errors import DatasetError

__all__ = ["EvalSetup", "load_eval_dataset", "prepare", "iterate_batches", "check_finite", "check_class_names", "first_class_difference", "gather_skipped", "shard", "Progress"]

Progress = Callable[[int], None]  # called with the number of images just processed


@dataclass
class EvalSetup:
    """Everything an evaluator needs besides its own settings."""

    checkpoint: LoadedCheckpoint
    dataset: ERSMDataset
    indices: list[int]  # dataset indices evaluated (after --limit), ascending
    device: torch.device
    dataset_name: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # dataset options, for provenance
    subset: dict[str, Any] = field(default_factory=dict)  # --limit / --subset-seed selection (subset_record)

    @property
    def model(self):
        return self.checkpoint.model

    def describe(self) -> dict[str, Any]:
        """Plain description for summary.json."""
        return {
            "checkpoint": str(self.checkpoint.path),
            "checkpoint_sha256": self.checkpoint.sha256,
            "config": self.checkpoint.config.to_dict(),
            "class_names": list(self.checkpoint.class_names),
            "provenance": self.checkpoint.provenance,
            "dataset": {**self.dataset.describe(), "dataset": self.dataset_name, "options": self.options},
            "n_images": len(self.indices),
            "subset": self.subset or subset_record(self.indices, None, 0, len(self.dataset)),
            "device": str(self.device),
        }


def load_eval_dataset(
    checkpoint: LoadedCheckpoint,
    dataset: str,
    split: str = "test",
    data_root: str | Path | None = None,
    limit: int | None = None,
    dataset_options: dict[str, Any] | None = None,
    subset_seed: int = 0,
) -> tuple[ERSMDataset, list[int]]:
    """The dataset as the checkpoint's model sees it, and the indices to evaluate.

    ``limit`` picks a seeded (``subset_seed``), class-stratified subset of that many
    images (:func:`ersm_core.data.subset.stratified_subset`): the same images in
    every command for the same limit and seed.

    Raises DatasetError if the class count differs from the checkpoint's or the
    selection is empty.
    """
    options = dict(dataset_options or {})
    if dataset == "synthetic":
        options.setdefault("num_classes", checkpoint.config.num_classes)
    data = build_dataset(dataset, split, model_transform(checkpoint.model), root=data_root, **options)
    if len(data.classes) != checkpoint.config.num_classes:
        raise DatasetError(
            f"dataset {dataset!r} has {len(data.classes)} classes but the checkpoint {checkpoint.path} "
            f"was trained for {checkpoint.config.num_classes} "
            f"({first_class_difference(checkpoint.class_names, data.classes)}); "
            "evaluate it on the dataset it was trained on"
        )
    check_class_names(checkpoint.class_names, data.classes, checkpoint.path, dataset)
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be at least 1 (got {limit}): there would be no images to evaluate")
    if limit is None or limit >= len(data):
        return data, list(range(len(data)))
    # the one subset rule of every command: seeded, class-stratified, sorted
    return data, stratified_subset(dataset_labels(data), limit, subset_seed)


def prepare(
    checkpoint_path: str | Path,
    dataset: str,
    split: str = "test",
    data_root: str | Path | None = None,
    limit: int | None = None,
    device: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    subset_seed: int = 0,
) -> EvalSetup:
    """Load the checkpoint (untrusted: weights only), the dataset and pick the device."""
    dev = select_device(device)
    ckpt = load_checkpoint(checkpoint_path)
    ckpt.model.to(dev).eval()
    data, indices = load_eval_dataset(ckpt, dataset, split, data_root, limit, dataset_options, subset_seed)
    return EvalSetup(ckpt, data, indices, dev, dataset, dict(dataset_options or {}),
                     subset=subset_record(indices, limit, subset_seed, len(data)))


class _Guarded(Dataset):
    """Returns a marker instead of raising for an unreadable item, so the main process
    decides (stop with the file's name, or skip and count) even when a worker read it."""

    def __init__(self, dataset: ERSMDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            return self.dataset[self.indices[i]]
        except DatasetError as err:
            return {"_bad_index": self.indices[i], "_bad_message": str(err)}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    good = [it for it in items if "_bad_index" not in it]
    bad = [(it["_bad_index"], it["_bad_message"]) for it in items if "_bad_index" in it]
    batch = default_collate(good) if good else {}
    batch["_bad"] = bad
    return batch


def check_class_names(checkpoint_names: list[str], dataset_names: list[str], checkpoint_path: Any = "the checkpoint",
                      dataset: str = "the dataset") -> None:
    """Raise DatasetError at the first class whose name differs between checkpoint and dataset.

    Labels are class indices, so renamed or reordered classes would silently permute
    them; the message names the index and both names.
    """
    for i, (mine, theirs) in enumerate(zip(checkpoint_names, dataset_names)):
        if str(mine) != str(theirs):
            raise DatasetError(
                f"class {i} is {mine!r} in the checkpoint {checkpoint_path} but {theirs!r} in dataset {dataset!r}: "
                "class folders renamed or reordered since training would permute the labels; evaluate on the "
                "dataset the checkpoint was trained on (same class names, same order)"
            )
    if len(checkpoint_names) != len(dataset_names):
        raise DatasetError(
            f"the checkpoint {checkpoint_path} has {len(checkpoint_names)} classes but dataset {dataset!r} has "
            f"{len(dataset_names)} ({first_class_difference(checkpoint_names, dataset_names)}); "
            "evaluate it on the dataset it was trained on"
        )


def _index_tensor(indices: Any) -> torch.Tensor:
    """Dataset indices (tensor, array or list) as a CPU tensor, for messages."""
    return indices.detach().cpu() if torch.is_tensor(indices) else torch.as_tensor(np.asarray(indices))


def check_finite(values: torch.Tensor, indices: Any, what: str = "features", count: int | None = None) -> None:
    """Raise a clear error when a batch holds NaN or infinite values (never silent accuracy).

    ``values`` has the images on axis 0 and ``indices`` gives their dataset indices.
    ``count`` limits the check to the first ``count`` rows (the real images of a chunk
    padded with copies of its last one). The message lists each dataset index once,
    sorted, at most ten of them.
    """
    if count is not None:
        values = values[:count]
    n = values.shape[0]
    if n == 0:
        return
    finite = torch.isfinite(values.reshape(n, -1)).all(dim=1)
    if not bool(finite.all()):
        index = _index_tensor(indices)
        bad = sorted({int(i) for i in index.reshape(-1)[:n][~finite.cpu()].tolist()})
        shown = ", ".join(str(i) for i in bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise DatasetError(
            f"non-finite {what} (NaN or inf) for {len(bad)} image(s) of this batch, dataset indices [{shown}]; "
            "the checkpoint's weights or these images are broken (a diverged training run, or weights so large "
            "that the logits overflow?), so no accuracy is reported"
        )


def check_labels(labels: torch.Tensor, n_classes: int, indices: Any, count: int | None = None) -> None:
    """Raise a clear error when a label is not a class of the model's head (0 .. n_classes − 1),
    naming the first such image by dataset index (``count``: only the first rows are real)."""
    labels = labels[:count] if count is not None else labels
    bad = (labels < 0) | (labels >= n_classes)
    if bool(bad.any()):
        at = int(torch.nonzero(bad.reshape(-1))[0])
        index = _index_tensor(indices)
        raise DatasetError(
            f"label {int(labels.reshape(-1)[at])} of the image with index {int(index.reshape(-1)[at])} is not a class of "
            f"the model, whose head has {n_classes} classes (labels 0 to {n_classes - 1}); check the dataset's labels"
        )


def gather_skipped(skipped: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Every process's skipped images, merged and sorted by dataset index."""
    items = list(skipped)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, items)
        items = [it for part in parts for it in part]
    return [{"index": int(i), "error": msg} for i, msg in sorted(items)]


def shard(indices: list[int]) -> list[int]:
    """This process's share of the indices under torch.distributed (every image exactly once)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return indices[rank::world]
    return indices


def iterate_batches(
    dataset: ERSMDataset,
    indices: list[int],
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    sharded: bool = True,
    skip_bad_images: bool = False,
    skipped: list[tuple[int, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield collated batches of the given indices, moved to ``device``.

    With ``sharded`` (the default) only this process's share under torch.distributed;
    pass False for indices that are already a shard. Batch composition never
    changes results: every evaluator is per image.

    An unreadable image stops the run with a DatasetError naming the file, unless
    ``skip_bad_images``: then it is left out and ``(index, message)`` is appended
    to ``skipped``.
    """
    if batch_size < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise DatasetError(f"--workers must be 0 or more, got {workers}")
    mine = shard(indices) if sharded else list(indices)
    loader = DataLoader(
        _Guarded(dataset, mine), batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=torch.device(device).type == "cuda", collate_fn=_collate,
    )
    for batch in loader:
        bad = batch.pop("_bad")
        if bad and not skip_bad_images:
            raise DatasetError(f"{bad[0][1]}; pass --skip-bad-images to leave unreadable images out (they are counted and listed)")
        if skipped is not None:
            skipped.extend(bad)
        if "index" in batch:
            yield {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if progress is not None:
            progress(len(batch.get("index", [])) + len(bad))
