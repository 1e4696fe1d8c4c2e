"""Datasets (SPEC §5): synthetic, CUB-200-2011, Food-101, Oxford-IIIT Pets and image folders."""

from ersm_core.data.base import INTERPOLATIONS, NO_BOX, ERSMDataset, ImageTransform, RawItem, open_image
from ersm_core.data.registry import DATASETS, build_dataset, model_transform
from ersm_core.data.subset import dataset_labels, stratified_split, stratified_subset
from ersm_core.data.transforms import AUTHORS_CROP_PCT, DataConfig, backbone_data_config, resolve_data_config

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
    "INTERPOLATIONS",
    "dataset_labels",
    "stratified_split",
    "stratified_subset",
    "AUTHORS_CROP_PCT",
    "DataConfig",
    "backbone_data_config",
    "resolve_data_config",
]
