"""Scale-out on torch.distributed: start-up from torchrun's environment and gathering
per-image records on rank 0.

Under ``torchrun --nproc-per-node N ersm-eval ...`` every process evaluates its own
share of the images (``ersm_eval.context.shard``: indices[rank::world], no padding
duplicates), the per-image records are gathered on rank 0, which sorts them by
dataset index and alone computes and writes the tables. Records are plain numpy
arrays keyed by name with the image axis first, so the gathered result is the
same as a single process's, to the last digit.
"""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["init_from_env", "local_device", "is_distributed", "rank", "world_size", "is_main", "gather_records", "barrier", "shutdown"]


def is_distributed() -> bool:
    """True inside an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes outputs."""
    return rank() == 0


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group described by torchrun's variables; no-op when WORLD_SIZE ≤ 1.

    NCCL when the device is CUDA, gloo otherwise. Returns True when distributed.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = device is not None and device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return True


def local_device(device: torch.device) -> torch.device:
    """Under torchrun with CUDA, each process uses the GPU of its LOCAL_RANK."""
    if is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def gather_records(records: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Concatenate every rank's records on rank 0, sorted by their ``index``.

    Returns the merged records on rank 0 and None elsewhere; single-process runs
    get their own records back, sorted (:func:`ersm_eval.records.sort_records`). A
    process whose share held no image passes None.
    """
    from ersm_eval.records import concat_records, sort_records

    if is_distributed():
        parts: list[dict[str, np.ndarray]] | None = [None] * world_size() if is_main() else None  # type: ignore[list-item]
        dist.gather_object(records, parts, dst=0)
        if not is_main():
            return None
        assert parts is not None
        merged = concat_records([p for p in parts if p is not None], "the evaluation")
    else:
        merged = concat_records([records] if records is not None else [], "the evaluation")
    return sort_records(merged)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()
