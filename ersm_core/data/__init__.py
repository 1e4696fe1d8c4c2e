"""Datasets (SPEC §5): synthetic, CUB-200-2011, Food-101, Oxford-IIIT Pets and image folders."""

from ersm_core.data.base import NO_BOX, ERSMDataset, ImageTransform, RawItem, open_image
from ersm_core.data.registry import DATASETS, build_dataset, model_transform

# importing the modules registers the datasets
from ersm_core.data import synthetic, cub, food101, pets, imagefolder  # noqa: E402,F401

__all__ = [
    "NO_BOX",
    "ERSMDataset",
    "ImageTransform",
    "RawItem",
    "open_image",
    "DATASETS",
    "build_dataset",
    "model_transform",
]
