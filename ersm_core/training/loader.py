"""The seeded DataLoader every training pass uses (shuffling, workers, distributed shares)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["make_loader"]


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from its torch seed (set by the loader's generator)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device, *, shuffle: bool, seed: int,
                world: int = 1, rank: int = 0, collate_fn: Callable | None = None) -> DataLoader:
    """A loader whose order comes from its own generator seeded by ``seed`` (saved and restored on resume)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if world > 1 and shuffle:
        # each process trains on its own share of every epoch (batch size is per process)
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=_seed_worker if workers else None,
        generator=generator,
        pin_memory=device.type == "cuda",
        collate_fn=collate_fn,
        # a last batch of one image breaks BatchNorm in training mode
        drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > 1,
    )
