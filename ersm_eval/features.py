"""Backbone features for feature-level evaluations, through the optional cache.

``feature_batches`` yields ``{"features", "label", "index"}`` batches for this
process's share of the images. With a :class:`~ersm_eval.cache.FeatureCache`
(whose key it completes with the dataset's fingerprint, the insertion point, the
dtype and the device type),
images are grouped by cache chunk: a cached chunk skips image loading and the
backbone entirely; a missing or corrupt one is computed and stored.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any, Iterator

import numpy as np
import torch

from ersm_core.checkpoint import versions
from ersm_core.data import ERSMDataset
from ersm_eval.cache import FeatureCache
from ersm_eval.context import Progress, check_finite, iterate_batches, shard
from ersm_eval.forward import fixed_chunks

__all__ = ["feature_batches"]


@torch.no_grad()
def _compute(model, dataset, indices, batch_size, workers, device, progress, sharded=True, **bad) -> Iterator[dict[str, Any]]:
    for batch in iterate_batches(dataset, indices, batch_size, workers, device, progress, sharded=sharded, **bad):
        features = fixed_chunks(model.forward_features, batch["image"])  # the same bits for every batch size
        check_finite(features, batch["index"], "backbone features")
        yield {"features": features, "label": batch["label"], "index": batch["index"]}


def feature_batches(
    model,
    dataset: ERSMDataset,
    indices: list[int],
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    skip_bad_images: bool = False,
    skipped: list[tuple[int, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield feature batches (model in eval mode) for this process's shard of ``indices``.

    Unreadable images stop the run, or with ``skip_bad_images`` are left out and
    listed in ``skipped``; non-finite features raise a DatasetError.
    """
    model.eval()
    bad = {"skip_bad_images": skip_bad_images, "skipped": skipped}
    if cache is None:
        yield from _compute(model, dataset, indices, batch_size, workers, device, progress, **bad)
        return
    device = torch.device(device)
    if not cache._ready:  # the dataset and model part of the key (see ersm_eval.cache)
        param = next(model.parameters(), None)
        cache.bind(
            dataset,
            insertion_point="forward_features",
            feature_hw=list(getattr(model, "feature_hw", ())),
            dtype=str(param.dtype if param is not None else torch.get_default_dtype()),
            device_type=device.type,
            versions={"ersm_eval": versions().get("ersm_eval", "unknown"), "torch": torch.__version__},
        )
    mine = shard(indices)
    for chunk, group in groupby(mine, key=FeatureCache.chunk_of):
        needed = list(group)
        hit = cache.load_chunk(chunk, needed)
        if hit is None:
            parts = list(_compute(model, dataset, needed, batch_size, workers, device, None, sharded=False, **bad))
            if not parts:  # every image of the chunk was unreadable and skipped
                if progress is not None:
                    progress(len(needed))
                continue
            feats = torch.cat([p["features"] for p in parts]).float().cpu().numpy()
            labels = torch.cat([p["label"] for p in parts]).cpu().numpy()
            got = torch.cat([p["index"] for p in parts]).cpu().numpy()
            cache.store_chunk(chunk, got, feats, labels)
            hit = (got, feats, labels)
        idx, feats, labels = hit
        for start in range(0, len(idx), batch_size):
            sl = slice(start, start + batch_size)
            yield {
                "features": torch.from_numpy(np.ascontiguousarray(feats[sl])).to(device),
                "label": torch.from_numpy(labels[sl]).to(device),
                "index": torch.from_numpy(idx[sl]).to(device),
            }
            if progress is not None:
                progress(len(idx[sl]))
