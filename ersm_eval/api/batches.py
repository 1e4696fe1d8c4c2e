"""Batches as the evaluators read them: loaders of ``(x, y)``, ``(x, y, extra)`` or dicts, and
the project's own :class:`DatasetBatches` (what the pipelines feed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ersm_core.errors import DatasetError
from ersm_eval.context import check_finite

__all__ = ["DatasetBatches", "iterate_loader", "iterate_source"]


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        batch = dict(item)
        missing = [k for k in ("image", "label") if k not in batch]
        if missing:
            raise DatasetError(
                f"dict batches need the keys 'image' and 'label' (got {sorted(batch)}); or yield (x, y) tuples"
            )
        return batch
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        batch = {"image": item[0], "label": item[1]}
        if len(item) == 3:
            extra = item[2]
            if isinstance(extra, Mapping):
                batch.update(extra)
            elif torch.is_tensor(extra) and extra.dim() == 3:
                batch["mask"] = extra
            else:
                raise DatasetError(
                    "the third element of an (x, y, extra) batch must be a dict (mask, box, has_mask, index) or a "
                    f"tensor of object masks [B, H, W]; got {type(extra).__name__}"
                    f"{' of shape ' + str(tuple(extra.shape)) if torch.is_tensor(extra) else ''}"
                )
        return batch
    raise DatasetError(
        f"a batch must be (x, y), (x, y, extra) or a dict with 'image' and 'label'; got {type(item).__name__}"
        f"{' of length ' + str(len(item)) if isinstance(item, (tuple, list)) else ''}"
    )


def iterate_loader(loader: Iterable[Any], device: torch.device | str) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Normalized batches on ``device`` and the loader positions of their images.

    Each batch dict has ``image`` [B, 3, H, W], ``label`` [B] long, ``index`` [B] long (the
    batch's own ``index`` if it has one, else the positions), ``has_mask`` [B] bool,
    ``mask`` [B, H, W] (zeros where unknown) and ``box`` [B, 4] (−1 where unknown).
    """
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        raise DatasetError("the DataLoader shuffles (shuffle=True); evaluate with shuffle=False, since an image's "
                           "position in the loader is its index")
    position = 0
    for item in loader:
        batch = _as_dict(item)
        images = torch.as_tensor(batch["image"])
        if images.dim() != 4:
            raise DatasetError(f"images must be a batch [B, C, H, W], got shape {tuple(images.shape)}")
        images = images.to(device).float() if not images.is_floating_point() else images.to(device)
        n = images.shape[0]
        positions = np.arange(position, position + n, dtype=np.int64)
        check_finite(images, torch.as_tensor(positions), "input images")
        position += n
        labels = torch.as_tensor(batch["label"]).to(device).long().reshape(-1)
        if labels.shape[0] != n:
            raise DatasetError(f"a batch has {n} images but {labels.shape[0]} labels")
        index = batch.get("index")
        index = torch.as_tensor(positions) if index is None else torch.as_tensor(index).long().reshape(-1).cpu()
        height, width = images.shape[2:]
        mask = batch.get("mask")
        if mask is None:
            mask_t = torch.zeros(n, height, width, device=device)
            has_mask = torch.zeros(n, dtype=torch.bool)
        else:
            mask_t = torch.as_tensor(mask).to(device).float()
            if mask_t.dim() == 4 and mask_t.shape[1] == 1:
                mask_t = mask_t[:, 0]
            if tuple(mask_t.shape) != (n, height, width):
                raise DatasetError(f"object masks must be [B, H, W] = {(n, height, width)}, got {tuple(mask_t.shape)}")
            has_mask = torch.as_tensor(batch.get("has_mask", torch.ones(n, dtype=torch.bool))).bool().reshape(-1).cpu()
        box = batch.get("box")
        box_t = torch.full((n, 4), -1.0) if box is None else torch.as_tensor(box).float().reshape(n, 4)
        out = {"image": images, "label": labels, "index": index.to(device), "mask": mask_t, "has_mask": has_mask,
               "box": box_t.to(device)}
        yield out, positions


@dataclass
class DatasetBatches:
    """Batches already in the project's dict form, over known dataset indices (what the CLI feeds).

    The batches (``image`` or, for feature-level deletion, precomputed ``features``; ``label``,
    ``index``, and ``mask`` / ``has_mask`` / ``box`` where the dataset has them) may be this
    process's share only: under torchrun every process passes its share, the records are
    gathered on rank 0, which alone gets a result (the others get None).

    Attributes:
        batches: the batches, in any order.
        indices: every dataset index evaluated, ascending (all processes together): row i of
            external score maps belongs to image ``indices[i]``.
        has_masks: the dataset has object masks or boxes (occlusion's object/background patterns).
        dataset: the dataset, for the sparsity gallery's images (None: no gallery images).
        mean: the images' normalization mean.
        std: its standard deviation.
    """

    batches: Iterable[dict[str, Any]]
    indices: Sequence[int]
    has_masks: bool = False
    dataset: Any = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def iterate_source(source: Any, device: torch.device) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(batch, positions) from a loader (:func:`iterate_loader`) or :class:`DatasetBatches`
    (positions: each image's row in ``indices``)."""
    if not isinstance(source, DatasetBatches):
        yield from iterate_loader(source, device)
        return
    indices = np.asarray(source.indices, dtype=np.int64)
    for batch in source.batches:
        yield batch, np.searchsorted(indices, np.asarray(torch.as_tensor(batch["index"]).cpu(), dtype=np.int64))
