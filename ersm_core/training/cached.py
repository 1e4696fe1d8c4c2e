"""The feature sets of a frozen-backbone run: computed once, in memory or on disk, or reused from disk
or from an earlier run of the same process (:class:`~ersm_core.training.shared.SharedFeatures`)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import Dataset

from ersm_core.config import TrainConfig
from ersm_core.feature_key import key_digest
from ersm_core.model import ERSMModel
from ersm_core.training.features import FeatureSet, compute_features, fits_in_memory, view_flips
from ersm_core.training.progress import TrainProgress
from ersm_core.training.shared import SharedFeatures
from ersm_core.training.storage import DiskEntry, FeaturePlan, entry_key, plan_storage, weights_sha256

__all__ = ["cached_sets", "shared_test_set"]


def cached_sets(
    model: ERSMModel, data: Dataset, train_indices: list[int], val_indices: list[int], config: TrainConfig,
    device: torch.device, progress: TrainProgress, shared: SharedFeatures | None = None,
) -> tuple[FeatureSet, FeatureSet | None, dict[str, Any], FeaturePlan | None]:
    """(train set, validation set or None, provenance record, storage plan) of cached backbone features.

    ``data`` serves the training split with the eval transform. The plan's size and place
    are reported (``progress.message``) before any feature is computed; the caller closes
    the plan when the run ends (a spill folder is then removed). With ``shared``, features
    an earlier run of this process computed under the same key (backbone weights, data,
    transform, images, views, device, batch size) are used as they are, and the features computed here
    are kept there for the next run: the plan is then ``shared``'s to close (None is returned).
    The provenance record is the one the pass wrote (its ``seconds`` are this run's own).
    """
    started = time.time()
    views, seed = config.feature_views, config.seed
    flips = view_flips(train_indices, views, seed) if views else None
    h, w = model.feature_hw
    splits = [(name, idx, fl, (views or 1) if fl is not None else 1)
              for name, idx, fl in (("train", train_indices, flips), ("val", val_indices, None)) if idx]
    n_bytes = sum(v * len(idx) * model.channels * h * w * 4 for _, idx, _, v in splits)
    shared_key = None
    if shared is not None:
        backbone_sha = weights_sha256(model.backbone)
        shared_key = key_digest({"device": str(device), "batch_size": config.batch_size, "splits": {
            name: entry_key(backbone_sha, data, "train", idx, fl, device.type, config.dataset, config.dataset_options())
            for name, idx, fl, _ in splits}})
        kept = shared.get(shared_key)
        if kept is not None:
            return _from_shared(kept, seed, started, progress)
    plan = plan_storage(n_bytes, config.feature_cache_dir)
    progress.message(plan.describe())
    backbone_sha = weights_sha256(model.backbone) if plan.root is not None or shared is not None else ""
    sets: dict[str, FeatureSet] = {}
    reused: list[str] = []
    try:
        for split, indices, split_flips, n_views in splits:
            shape = (n_views, len(indices), model.channels, h, w)
            entry = None
            if plan.root is not None:
                key = entry_key(backbone_sha, data, "train", indices, split_flips, device.type, config.dataset,
                                config.dataset_options())
                entry = DiskEntry(plan.root, key, shape)
            loaded = entry.load() if entry is not None and plan.storage == "disk" else None
            if loaded is not None:
                progress.message(f"reusing the cached {split} features in {entry.dir}")
                reused.append(split)
                features, labels = loaded
            else:
                if entry is None:
                    features, labels = torch.empty(shape, dtype=torch.float32), torch.empty(len(indices), dtype=torch.long)
                else:
                    features, labels = entry.create()
                progress.features_start(split, len(indices) * n_views)
                try:
                    compute_features(model, data, indices, device, config.batch_size, config.workers, split_flips,
                                     progress, features, labels)
                    if entry is not None:
                        entry.commit()
                except BaseException:
                    if entry is not None:
                        entry.abandon()
                    raise
            sets[split] = FeatureSet(features, labels, seed=seed)
    except BaseException:
        plan.close()
        raise
    info = {
        "used": True,
        "views": views or 1,
        "augmentation": f"{views} seeded views per image (each flipped with probability 0.5)" if views else "none (unaugmented features)",
        "storage": plan.storage,
        "bytes": int(n_bytes),
        "seconds": round(time.time() - started, 3),
    }
    if plan.storage == "disk":
        info.update({"folder": str(plan.root), "reused": reused})
    if shared is not None:
        shared.put(shared_key, {name: (s.features, s.labels) for name, s in sets.items()}, info, plan, info["seconds"])
        return sets["train"], sets.get("val"), info, None
    return sets["train"], sets.get("val"), info, plan


def _from_shared(kept, seed: int, started: float, progress: TrainProgress):
    """The feature sets of a run from features an earlier run of this process computed (same key)."""
    splits, info = kept
    progress.message(f"reusing the backbone features of an earlier run of this process ({info['storage']}, no backbone pass)")
    sets = {name: FeatureSet(features, labels, seed=seed) for name, (features, labels) in splits.items()}
    if info["storage"] == "disk":  # as a later run reading the same cache folder records it
        info["reused"] = list(sets)
    info["seconds"] = round(time.time() - started, 3)
    return sets["train"], sets.get("val"), info, None


def shared_test_set(model: ERSMModel, data: Dataset, indices: list[int], config: TrainConfig, device: torch.device,
                    progress: TrainProgress, shared: SharedFeatures) -> FeatureSet | None:
    """The test images' backbone features, kept in ``shared`` (computed by the first run that asks).

    ``data`` is the test split (eval transform). The features are computed in the batches
    the test pass reads (``config.batch_size``, in order), so scoring them gives the numbers
    the whole model gives on the images. None (score the images) when they would not fit in memory.
    """
    started = time.time()
    h, w = model.feature_hw
    if not indices or not fits_in_memory(len(indices) * model.channels * h * w * 4):
        return None
    test_key = entry_key(weights_sha256(model.backbone), data, "test", indices, None, device.type, config.dataset,
                         config.dataset_options())
    key = key_digest({"device": str(device), "batch_size": config.batch_size, "test": test_key})
    kept = shared.get(key)
    if kept is None:
        features = torch.empty((1, len(indices), model.channels, h, w), dtype=torch.float32)
        labels = torch.empty(len(indices), dtype=torch.long)
        progress.features_start("test", len(indices))
        compute_features(model, data, indices, device, config.batch_size, config.workers, None, progress, features, labels)
        shared.put(key, {"test": (features, labels)}, {}, None, time.time() - started)
    else:
        features, labels = kept[0]["test"]
    return FeatureSet(features, labels, seed=config.seed)
