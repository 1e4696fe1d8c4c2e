"""The report's gallery: which images it shows (:func:`select_gallery`) and the arrays of maps.npz
(:func:`gallery_arrays`), read from the dataset or from the loader a second time."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ersm_eval.schema import MAPS_NPZ

__all__ = ["select_gallery", "gallery_arrays", "gallery_source"]


def select_gallery(per_image: pd.DataFrame, extra: Sequence[int] = (), first: int = 8, per_category: int = 8) -> list[int]:
    """Gallery images: the first ``first`` evaluated, up to ``per_category`` of each failure
    category (lowest indices first), and every index in ``extra`` that was evaluated."""
    table = per_image.sort_values("index")
    chosen = list(table["index"].head(first))
    for category in ("focused", "distracted", "high_confidence"):
        chosen += list(table.loc[table["failure"] == category, "index"].head(per_category))
    evaluated = set(table["index"].tolist())
    chosen += [int(i) for i in extra if int(i) in evaluated]
    return sorted({int(i) for i in chosen})


def gallery_arrays(dataset: Any, records: dict[str, np.ndarray], indices: Sequence[int], map_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of maps.npz for the chosen images (keys in :mod:`ersm_eval.schema`'s MAPS_NPZ doc).

    ``index``, ``image`` [n,S,S,3] uint8, ``label``, ``prediction``, the token maps
    ``keep`` / ``energy`` / ``cam`` [n,h,w] the model has (raw values: π, E, signed
    CAM), and ``mask`` [n,S,S] when the dataset has object masks or boxes.
    """
    position = {int(i): p for p, i in enumerate(records["index"])}
    rows = [position[int(i)] for i in indices]
    out: dict[str, np.ndarray] = {
        "index": np.asarray(indices, dtype=np.int64),
        "image": np.stack([np.asarray(dataset.image_uint8(int(i)), dtype=np.uint8) for i in indices]),
        "label": records["label"][rows].astype(np.int64),
        "prediction": records["prediction"][rows].astype(np.int64),
    }
    for name in map_names:
        out[name] = records[name][rows].astype(np.float32)
    if getattr(dataset, "has_masks", False) or getattr(dataset, "has_boxes", False):
        out["mask"] = np.stack([dataset[int(i)]["mask"].numpy().astype(np.float32) for i in indices])
    return out


class _GalleryImages:
    """The two things :func:`~ersm_eval.sparsity.gallery_arrays` reads from a dataset, from kept images."""

    def __init__(self, images: dict[int, np.ndarray], masks: dict[int, np.ndarray] | None) -> None:
        self.images = images
        self.masks = masks
        self.has_masks = masks is not None

    def image_uint8(self, index: int) -> np.ndarray:
        return self.images[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"mask": torch.from_numpy(self.masks[index])}


def _to_uint8(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalized images [B, 3, H, W] as [B, H, W, 3] uint8 (min-max per image when mean/std are unknown)."""
    x = images.detach().float().cpu()
    if mean and std:
        x = x * torch.tensor(std)[None, :, None, None] + torch.tensor(mean)[None, :, None, None]
    else:
        low = x.flatten(1).amin(1)[:, None, None, None]
        high = x.flatten(1).amax(1)[:, None, None, None]
        x = (x - low) / (high - low).clamp_min(1e-12)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gallery_source(loader: Any, wrapped: Any, records: dict[str, np.ndarray], chosen: list[int], mean: Any, std: Any,
                    notes: list[str]) -> Any:
    """What :func:`gallery_arrays` reads the gallery images from: the dataset of
    :class:`~ersm_eval.api.DatasetBatches`, else the loader read a second time (None, with a note, for a
    one-shot iterator)."""
    from ersm_eval.api.batches import DatasetBatches, iterate_loader

    if isinstance(loader, DatasetBatches):
        return loader.dataset
    if iter(loader) is loader:
        notes.append(f"no {MAPS_NPZ}: the loader is a one-shot iterator, so the gallery images could not be read again")
        return None
    img_mean = tuple(mean) if mean is not None else tuple(wrapped.mean)
    img_std = tuple(std) if std is not None else tuple(wrapped.std)
    wanted = set(chosen)
    images: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    for batch, _ in iterate_loader(loader, "cpu"):
        rows = [r for r, i in enumerate(batch["index"].tolist()) if i in wanted]
        if rows:
            pixels = _to_uint8(batch["image"][rows], img_mean, img_std)
            for j, r in enumerate(rows):
                index = int(batch["index"][r])
                images[index] = pixels[j]
                masks[index] = batch["mask"][r].numpy().astype(np.float32)
    return _GalleryImages(images, masks if bool(records["has_mask"].any()) else None)
