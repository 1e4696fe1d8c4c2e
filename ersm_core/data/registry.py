"""The dataset registry and the one entry point, :func:`build_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ersm_core.data.base import INTERPOLATIONS, ERSMDataset, ImageTransform
from ersm_core.errors import DatasetError
from ersm_core.registry import Registry

__all__ = ["DATASETS", "build_dataset", "model_transform"]

# builder(root, split, transform, **options) -> ERSMDataset
DatasetBuilder = Callable[..., ERSMDataset]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def model_transform(model: Any, train: bool = False) -> ImageTransform:
    """The transform a model expects: its image size, crop, resize filter and normalization.

    Values left empty in the model's config are the backbone's own (for a timm
    backbone its pretrained config; see :mod:`ersm_core.data.transforms`). With
    ``train``, images are also flipped at random.
    """
    interpolation = getattr(model.config, "interpolation", "") or _backbone_interpolation(model)
    return ImageTransform(
        image_size=model.config.image_size,
        mean=tuple(model.mean),
        std=tuple(model.std),
        crop_pct=float(model.crop_pct),
        hflip=train,
        interpolation=interpolation,
    )


def _backbone_interpolation(model: Any) -> str:
    """The resize filter of a timm backbone's pretrained config; bilinear for the compact CNN."""
    cfg = getattr(getattr(model, "backbone", None), "pretrained_cfg", None) or {}
    interpolation = cfg.get("interpolation") if isinstance(cfg, dict) else None
    return interpolation if interpolation in INTERPOLATIONS else "bilinear"


def build_dataset(
    name: str,
    split: str,
    transform: ImageTransform,
    root: str | Path | None = None,
    **options: Any,
) -> ERSMDataset:
    """Build a registered dataset; a missing or malformed one raises DatasetError.

    Args:
        name: ``synthetic``, ``cub``, ``food101``, ``pets`` or ``imagefolder``.
        split: ``train`` or ``test``.
        transform: geometry and normalization (see :func:`model_transform`).
        root: data folder (not used by ``synthetic``).
        **options: dataset-specific options (synthetic: ``seed``, ``spurious``, sizes).
    """
    builder = DATASETS.get(name)
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; use 'train' or 'test'")
    dataset = builder(root=Path(root) if root else None, split=split, transform=transform, **options)
    if len(dataset) == 0:
        raise DatasetError(f"dataset {name!r} split {split!r} is empty" + (f" (looked in {root})" if root else ""))
    return dataset
