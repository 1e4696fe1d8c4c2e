"""The feature cache: hits skip the backbone, key changes miss, corruption is rebuilt."""

import numpy as np
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_eval.cache import CHUNK, FeatureCache, cache_key
from ersm_eval.output import check_output_dir, output_folder


def _key(**over):
    base = dict(checkpoint_sha256="a" * 64, dataset="synthetic", split="test", transform={"image_size": 32}, options={})
    base.update(over)
    return cache_key(**base)


def test_round_trip_and_subset(tmp_path):
    cache = FeatureCache(tmp_path, _key())
    feats = np.random.default_rng(0).standard_normal((6, 4, 2, 2)).astype(np.float32)
    cache.store_chunk(0, np.arange(6), feats, np.arange(6) % 3)
    idx, got, labels = cache.load_chunk(0, [1, 4])
    assert idx.tolist() == [1, 4]
    np.testing.assert_array_equal(got, feats[[1, 4]])
    assert labels.tolist() == [1, 1]
    assert cache.load_chunk(0, [1, 7]) is None  # 7 was never stored
    assert cache.load_chunk(1, [CHUNK]) is None


@pytest.mark.parametrize("change", [
    {"checkpoint_sha256": "b" * 64}, {"dataset": "cub"}, {"split": "train"},
    {"transform": {"image_size": 64}}, {"options": {"seed": 1}},
])
def test_any_key_change_misses(tmp_path, change):
    FeatureCache(tmp_path, _key()).store_chunk(0, np.arange(2), np.zeros((2, 1, 1, 1)), np.zeros(2))
    assert FeatureCache(tmp_path, _key()).load_chunk(0, [0, 1]) is not None
    assert FeatureCache(tmp_path, _key(**change)).load_chunk(0, [0, 1]) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "sidecar"])
def test_corruption_is_detected_and_dropped(tmp_path, damage):
    cache = FeatureCache(tmp_path, _key())
    cache.store_chunk(0, np.arange(3), np.ones((3, 2, 1, 1)), np.zeros(3))
    feat_file = next(cache.dir.glob("*.features.npy"))
    if damage == "flip":
        data = bytearray(feat_file.read_bytes())
        data[-1] ^= 0xFF
        feat_file.write_bytes(bytes(data))
    elif damage == "truncate":
        feat_file.write_bytes(feat_file.read_bytes()[:20])
    elif damage == "delete":
        feat_file.unlink()
    else:
        next(cache.dir.glob("c*.json")).write_text("{not json")
    fresh = FeatureCache(tmp_path, _key())
    assert fresh.load_chunk(0, [0]) is None
    assert fresh.rebuilt, "the damaged chunk must be reported as rebuilt"
    assert not list(fresh.dir.glob("c000000-*")), "the damaged chunk's files must be removed"


def test_cache_root_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        FeatureCache(f, _key())


def test_output_folder_is_atomic(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with output_folder(out) as tmp:
            (tmp / "a.csv").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "no partial folder may be left behind"
    with output_folder(out) as tmp:
        (tmp / "a.csv").write_text("x")
    assert (out / "a.csv").read_text() == "x"
    with pytest.raises(ConfigError, match="--overwrite"):
        check_output_dir(out)
    with output_folder(out, overwrite=True) as tmp:
        (tmp / "b.csv").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [".ersm-eval-output", "b.csv"]  # the marker of an ersm-eval folder
