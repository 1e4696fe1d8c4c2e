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


# -- a chunk is validated before use: anything store_chunk would not write is corrupt ----------------
def _stored(tmp_path):
    cache = FeatureCache(tmp_path, _key())
    feats = np.random.default_rng(0).standard_normal((3, 4, 2, 2)).astype(np.float32)
    cache.store_chunk(0, np.arange(3), feats, np.array([0, 1, 2]))
    sidecar = next(cache.dir.glob("c000000-*.json"))
    return sidecar, sidecar.with_suffix("")


def _save(path, array) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    path.write_bytes(buf.getvalue())


def _resign(sidecar, stem) -> None:
    """Update the sidecar's checksums to the edited files (the checksum alone no longer tells)."""
    import hashlib
    import json

    entry = json.loads(sidecar.read_text())
    for part in ("features", "labels"):
        entry[f"{part}_sha256"] = hashlib.sha256(stem.with_name(f"{stem.name}.{part}.npy").read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(entry))


def _edit_array(part, change):
    def edit(sidecar, stem):
        path = stem.with_name(f"{stem.name}.{part}.npy")
        _save(path, change(np.load(path)))
        _resign(sidecar, stem)
    return edit


def _huge_header(sidecar, stem):
    import io

    path = stem.with_name(f"{stem.name}.features.npy")
    data = np.load(path).tobytes()
    buf = io.BytesIO()  # claims 1.6 TB, holds 192 bytes
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**11, 4, 2, 2)})
    path.write_bytes(buf.getvalue() + data)
    _resign(sidecar, stem)


def _sidecar(text_of):
    def edit(sidecar, stem):
        import json

        sidecar.write_text(text_of(json.loads(sidecar.read_text())))
    return edit


@pytest.mark.parametrize("damage", [
    _sidecar(lambda e: "[1, 2]"),
    _sidecar(lambda e: __import__("json").dumps({**e, "indices": 5})),
    _sidecar(lambda e: __import__("json").dumps({**e, "indices": ["0", "1", "2"]})),
    _sidecar(lambda e: __import__("json").dumps({**e, "indices": [0, 1, 2, 9999]})),
    _sidecar(lambda e: __import__("json").dumps({**e, "features_sha256": 7})),
    _sidecar(lambda e: "[" * 100_000 + "]" * 100_000),
    _edit_array("labels", lambda a: np.full_like(a, 999)),
    _edit_array("labels", lambda a: (a + 1) % 3),
    _edit_array("labels", lambda a: a.astype(np.int32)),
    _edit_array("features", lambda a: a[:, :3]),
    _edit_array("features", lambda a: a[:1]),
    _edit_array("features", lambda a: a.astype(np.complex64)),
    _edit_array("features", lambda a: np.where(a > 0, np.nan, a).astype(np.float32)),
    _edit_array("features", lambda a: np.asfortranarray(a.transpose(0, 1, 3, 2))),
    _huge_header,
], ids=["sidecar-list", "indices-int", "indices-text", "indices-other-chunk", "sha-number", "sidecar-deep",
        "labels-999", "labels-not-the-dataset's", "labels-int32", "3-channels", "1-row", "complex64",
        "nan-features", "fortran-order", "huge-header"])
def test_a_chunk_whose_content_is_wrong_is_dropped_and_rebuilt(tmp_path, damage):
    sidecar, stem = _stored(tmp_path)
    damage(sidecar, stem)
    fresh = FeatureCache(tmp_path, _key())
    dataset_labels = lambda idx: np.asarray(idx) % 3  # noqa: E731 - the labels stored above
    assert fresh.load_chunk(0, [0, 1], feature_shape=(4, 2, 2), n_classes=3, labels_of=dataset_labels) is None
    assert fresh.rebuilt, "the damaged chunk must be reported as rebuilt"
    assert not list(fresh.dir.glob("c000000-*")), "the damaged chunk's files must be removed"


def test_a_valid_chunk_passes_the_content_checks(tmp_path):
    _stored(tmp_path)
    fresh = FeatureCache(tmp_path, _key())
    hit = fresh.load_chunk(0, [0, 2], feature_shape=(4, 2, 2), n_classes=3, labels_of=lambda idx: np.asarray(idx) % 3)
    assert hit is not None and hit[0].tolist() == [0, 2] and hit[2].tolist() == [0, 2]
    assert not fresh.rebuilt
