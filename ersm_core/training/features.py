"""Frozen-backbone training from features computed once per image (the feature cache).

With a frozen backbone its features never change, so they are computed once per
image (the unaugmented image, or ``feature_views`` seeded flipped/unflipped views)
and the spatial module and head train from them for every epoch. The features live
in memory, or on disk as memory-mapped files (:mod:`ersm_core.training.disk_cache`)
when ``feature_cache_dir`` is given or when they would not fit in memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ersm_core.model import ERSMModel
from ersm_core.training.loader import make_loader
from ersm_core.training.progress import TrainProgress

__all__ = ["FromFeatures", "FeatureSet", "view_flips", "fits_in_memory", "compute_features", "MEMORY_SHARE"]

MEMORY_SHARE = 0.8  # an in-memory cache may take at most this share of the machine's memory


class FromFeatures(nn.Module):
    """The part of a model after the backbone: spatial module → pool → head, on cached features.

    :meth:`ERSMModel.forward_from_features` as a module (DDP wraps modules).
    """

    def __init__(self, model: ERSMModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, return_aux: bool = False):
        return self.model.forward_from_features(features, return_aux)


class FeatureSet(Dataset):
    """Cached features [V, N, C, H, W] with labels; item i of an epoch uses one of its V views.

    The view of each image in each epoch is drawn from a generator seeded by
    (seed, epoch), so a run is reproducible whatever the loader does. ``features`` may
    be a memory-mapped tensor: a batch reads only its own rows.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        self.features = features
        self.labels = labels
        self.seed = seed
        self.views = torch.zeros(features.shape[1], dtype=torch.long)

    def set_epoch(self, epoch: int) -> None:
        if self.features.shape[0] > 1:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self.views = torch.randint(self.features.shape[0], (self.features.shape[1],), generator=generator)

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[self.views[i], i], "label": self.labels[i]}

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        """A whole batch in one gather (the loader's sampler, hence the order, is unchanged)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"features": self.features[self.views[index], index], "label": self.labels[index]}

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        """:meth:`__getitems__` already returns a batch."""
        return batch


def view_flips(indices: list[int], views: int, seed: int) -> np.ndarray:
    """[views, len(indices)] booleans: whether view v of dataset image i is flipped (seeded by seed, v, i)."""
    return np.array([[np.random.default_rng([seed, 7, v, int(i)]).random() < 0.5 for i in indices] for v in range(views)],
                    dtype=bool).reshape(views, len(indices))


def physical_memory() -> int:
    """Bytes of memory of this machine (0 when unknown)."""
    try:
        return max(0, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def fits_in_memory(n_bytes: int) -> bool:
    """Whether a cache of ``n_bytes`` stays within :data:`MEMORY_SHARE` of this machine's memory."""
    physical = physical_memory()
    return physical <= 0 or n_bytes <= MEMORY_SHARE * physical


@torch.no_grad()
def compute_features(
    model: ERSMModel, dataset: Dataset, indices: list[int], device: torch.device, batch_size: int, workers: int,
    flips: np.ndarray | None, progress: TrainProgress, features: torch.Tensor, labels: torch.Tensor,
) -> None:
    """Fill ``features`` [V, N, C, H, W] (float32, CPU or memory-mapped) and ``labels`` [N] once per view.

    The backbone runs in eval mode (frozen: BatchNorm statistics fixed), as in training.
    ``flips[v, j]`` flips image j for view v (a flip of the normalized image equals a
    flip of the pixels); None means one unflipped view.
    """
    views = 1 if flips is None else flips.shape[0]
    was_training = model.training
    model.eval()
    loader = make_loader(Subset(dataset, indices), batch_size, workers, device, shuffle=False, seed=0)
    start = 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        n = len(images)
        labels[start:start + n] = batch["label"]
        for v in range(views):
            x = images
            if flips is not None and flips[v, start:start + n].any():
                flip = torch.as_tensor(flips[v, start:start + n], device=device)
                x = torch.where(flip[:, None, None, None], images.flip(-1), images)
            features[v, start:start + n] = model.forward_features(x).float().cpu()
        start += n
        progress.features_step(n * views)
    model.train(was_training)
