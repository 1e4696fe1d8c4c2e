"""The frozen-backbone feature cache on disk: same history as in memory, reused, checked, spilled when too big."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig
from ersm_core.training import HISTORY_COLUMNS, TrainConfig, TrainProgress, train

COLUMNS = [c for c in HISTORY_COLUMNS if c != "seconds"]
MODEL = ModelConfig(num_classes=10, image_size=32, variant="l0", freeze_backbone=True)
TINY = dict(dataset="synthetic", n_train=48, n_test=16, batch_size=16, device="cpu", epochs=2, feature_views=2)


class _Messages(TrainProgress):
    def __init__(self):
        self.lines, self.computed = [], []

    def message(self, text):
        self.lines.append(text)

    def features_start(self, split, n_images):
        self.computed.append(split)


def _same(a, b):
    pd.testing.assert_frame_equal(a.history[COLUMNS], b.history[COLUMNS], check_exact=True)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name


def test_disk_cache_gives_the_memory_history_and_is_reused(tmp_path):
    memory = train(MODEL, TrainConfig(**TINY))
    first_log, second_log = _Messages(), _Messages()
    first = train(MODEL, TrainConfig(**TINY, feature_cache_dir=str(tmp_path / "cache")), progress=first_log)
    second = train(MODEL, TrainConfig(**TINY, feature_cache_dir=str(tmp_path / "cache")), progress=second_log)
    _same(memory, first)
    _same(memory, second)
    assert memory.provenance["feature_cache"]["storage"] == "memory"
    assert first.provenance["feature_cache"]["storage"] == "disk" and first.provenance["feature_cache"]["reused"] == []
    assert second.provenance["feature_cache"]["reused"] == ["train", "val"]
    assert first_log.computed == ["train", "val"] and second_log.computed == []  # nothing recomputed
    assert any(line.startswith("feature cache: ") and "on disk in the cache folder" in line for line in first_log.lines)
    assert sum("reusing the cached" in line for line in second_log.lines) == 2
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 2 and all(name.startswith("train-") for name in entries)
    # other views: another training entry, not the first one's features; the validation entry is shared
    third_log = _Messages()
    train(MODEL, TrainConfig(**{**TINY, "feature_views": 3}, feature_cache_dir=str(tmp_path / "cache")), progress=third_log)
    assert third_log.computed == ["train"]
    # another seed: the same frozen backbone (a random one is drawn from a fixed seed), so the unaugmented
    # validation features are reused; the training views are flipped by the seed: a new entry
    fourth_log = _Messages()
    train(MODEL, TrainConfig(**{**TINY, "seed": 1}, feature_cache_dir=str(tmp_path / "cache")), progress=fourth_log)
    assert fourth_log.computed == ["train"]


def test_a_damaged_entry_is_rebuilt_not_used(tmp_path):
    cache = tmp_path / "cache"
    reference = train(MODEL, TrainConfig(**TINY, feature_cache_dir=str(cache)))
    for features in cache.glob("*/features.npy"):
        array = np.load(features, mmap_mode="r+")
        array[0, 0, 0, 0, 0] += 1.0  # one value changed in place: the checksum no longer matches
        array.flush()
        del array
    log = _Messages()
    again = train(MODEL, TrainConfig(**TINY, feature_cache_dir=str(cache)), progress=log)
    assert log.computed == ["train", "val"] and again.provenance["feature_cache"]["reused"] == []
    _same(reference, again)


def test_a_cache_too_big_for_memory_spills_to_a_temporary_folder(tmp_path, monkeypatch):
    import ersm_core.training.storage as storage

    memory = train(MODEL, TrainConfig(**TINY))
    monkeypatch.setattr(storage, "fits_in_memory", lambda n_bytes: False)
    monkeypatch.setattr(storage.tempfile, "tempdir", str(tmp_path))
    log = _Messages()
    spilled = train(MODEL, TrainConfig(**TINY), progress=log)
    _same(memory, spilled)
    assert spilled.provenance["feature_cache"]["storage"] == "spill"
    assert any("a temporary folder (it would not fit in memory)" in line for line in log.lines)
    assert list(tmp_path.iterdir()) == []  # the spill folder is removed when the run ends


def test_feature_cache_dir_needs_cached_training(tmp_path):
    with pytest.raises(ConfigError, match="--feature-cache-dir applies to cached training"):
        train(ModelConfig(num_classes=10, image_size=32), TrainConfig(**{**TINY, "feature_views": 0},
                                                                      feature_cache_dir=str(tmp_path)))


def test_cache_key_by_hand():
    """The key holds exactly what decides the features, in plain JSON types, and its digest is stable."""
    from ersm_core.feature_key import KEY_FORMAT, cache_key, key_digest

    key = cache_key("ab" * 32, "synthetic", "test", {"size": (32, 32), "crop_pct": 1.0}, {"n_test": 16}, "f" * 64,
                    dtype="float32", grid=(4, 4))
    assert key == {
        "checkpoint_sha256": "ab" * 32, "dataset": "synthetic", "split": "test",
        "transform": {"crop_pct": 1.0, "size": [32, 32]}, "options": {"n_test": "16"}, "format": KEY_FORMAT,
        "dataset_fingerprint": "f" * 64, "dtype": "float32", "grid": [4, 4],
    }
    assert key_digest(key) == key_digest(dict(reversed(list(key.items()))))  # key order does not matter
    assert key_digest(key) != key_digest({**key, "split": "train"})
