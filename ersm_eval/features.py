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

from ersm_core.versions import versions
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


def _expected_content(model, dataset: ERSMDataset) -> dict[str, Any]:
    """What a cached chunk must hold for this model and dataset (:meth:`FeatureCache.load_chunk`):
    the feature shape [C, H, W] when the model tells it, the class count, and the dataset's labels
    when it can give them without reading an image."""
    channels, hw = getattr(model, "channels", None), tuple(getattr(model, "feature_hw", ()) or ())
    shape = None
    if isinstance(channels, int) and len(hw) == 2 and all(isinstance(v, int) for v in hw):
        shape = (channels, *hw)
    classes = getattr(dataset, "classes", None)
    return {"feature_shape": shape, "n_classes": len(classes) if classes else None, "labels_of": _labels_of(dataset)}


def _labels_of(dataset: ERSMDataset):
    """A function giving the dataset's labels of some indices without loading images, or None."""
    label_of = getattr(dataset, "label_of", None)
    labels = getattr(dataset, "labels", None)
    samples = getattr(dataset, "samples", None)
    if callable(label_of):
        pick = label_of
    elif isinstance(labels, (list, tuple)) and len(labels) == len(dataset):
        pick = labels.__getitem__
    elif isinstance(samples, (list, tuple)) and len(samples) == len(dataset) and \
            all(isinstance(s, tuple) and len(s) >= 2 and isinstance(s[1], int) for s in samples[:1]):
        pick = lambda i: samples[i][1]  # noqa: E731
    else:
        return None

    def of(indices: np.ndarray) -> np.ndarray | None:
        try:
            return np.asarray([int(pick(int(i))) for i in indices], dtype=np.int64)
        except (IndexError, TypeError, ValueError):
            return None

    return of


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
    expected = _expected_content(model, dataset)
    for chunk, group in groupby(mine, key=FeatureCache.chunk_of):
        needed = list(group)
        hit = cache.load_chunk(chunk, needed, **expected)
        if hit is not None:  # validated by the cache; checked again as computed features are
            check_finite(torch.from_numpy(hit[1]), torch.from_numpy(hit[0]), "cached backbone features")
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
