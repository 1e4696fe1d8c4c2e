"""The cache key covers everything that changes the features: two datasets with the same name,
split and options in two folders each get their own numbers, and an edited image is a miss."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ersm_core.data import build_dataset, model_transform
from ersm_core.checkpoint import load_checkpoint
from tests.safety.inputs import imagefolder, run_cli, two_class_checkpoint, untouched


def _acc0(out) -> float:
    with open(out / "deletion_curves.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["ranking"] == "magnitude" and r["k"] == "0"]
    return float(rows[0]["accuracy"])


def _deletion(ckpt, root, out, cache=None):
    extra = ["--cache", cache] if cache else []
    r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", out, "--rankings", "magnitude",
                "--steps", "2", "--no-report", "--quiet", *extra)
    assert r.exit_code == 0, r.output
    return _acc0(out)


def test_two_datasets_with_the_same_name_get_their_own_numbers(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    first = imagefolder(tmp_path / "a", per_class=(3, 2))
    second = tmp_path / "b"  # the same files with the class folders swapped: every label flipped
    shutil.copytree(first / "test" / "cat", second / "test" / "dog")
    shutil.copytree(first / "test" / "dog", second / "test" / "cat")
    cache = tmp_path / "cache"
    plain = [_deletion(ckpt, r, tmp_path / f"plain-{r.name}") for r in (first, second)]
    assert plain[0] == 1.0 - plain[1] != plain[1], plain  # 5 images: the two accuracies cannot be equal
    with untouched(first, second, ckpt):
        cached = [_deletion(ckpt, r, tmp_path / f"cached-{r.name}", cache) for r in (first, second)]
        again = [_deletion(ckpt, r, tmp_path / f"again-{r.name}", cache) for r in (first, second)]
    assert cached == plain and again == plain
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2, "one cache entry per dataset"


def test_fingerprint_changes_with_folder_and_with_an_edited_file(tmp_path):
    ckpt = load_checkpoint(two_class_checkpoint(tmp_path / "two.pt"))
    transform = model_transform(ckpt.model)
    root = imagefolder(tmp_path / "a")
    fp = build_dataset("imagefolder", "test", transform, root=root).fingerprint()
    assert fp == build_dataset("imagefolder", "test", transform, root=root).fingerprint()
    copy = shutil.copytree(root, tmp_path / "b", copy_function=shutil.copy2)  # same bytes and times, another folder
    assert build_dataset("imagefolder", "test", transform, root=copy).fingerprint() != fp
    image = root / "test" / "cat" / "0.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # edited in place
    assert build_dataset("imagefolder", "test", transform, root=root).fingerprint() != fp


def test_synthetic_fingerprint_follows_generator_options(tmp_path):
    ckpt = load_checkpoint(two_class_checkpoint(tmp_path / "two.pt", names=("disk-solid", "disk-striped")))
    transform = model_transform(ckpt.model)
    fps = {build_dataset("synthetic", "test", transform, num_classes=2, n_test=8, seed=s).fingerprint() for s in (0, 0, 1)}
    assert len(fps) == 2


# -- a damaged chunk is rebuilt, never used (whatever in it was edited) ------------------------------
def _cached_deletion(ckpt, cache, out):
    r = run_cli("deletion", ckpt, "--dataset", "synthetic", "--limit", "8", "--steps", "4", "--seeds", "0",
                "--no-report", "-q", "--cache", cache, "--out", out)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    return (out / "deletion_curves.csv").read_text(), summary["cache"]


def _resign(sidecar) -> None:
    entry = json.loads(sidecar.read_text())
    stem = sidecar.with_suffix("")
    for part in ("features", "labels"):
        entry[f"{part}_sha256"] = hashlib.sha256(Path(f"{stem}.{part}.npy").read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(entry))


def _npy_edit(part, change):
    def edit(sidecar):
        path = Path(f"{sidecar.with_suffix('')}.{part}.npy")
        buf = io.BytesIO()
        np.save(buf, change(np.load(path)))
        path.write_bytes(buf.getvalue())
        _resign(sidecar)
    return edit


def _huge(sidecar):
    path = Path(f"{sidecar.with_suffix('')}.features.npy")
    data = np.load(path)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**11, *data.shape[1:])})
    path.write_bytes(buf.getvalue() + data.tobytes())
    _resign(sidecar)


@pytest.mark.parametrize("damage", [
    lambda s: s.write_text("[1,2]"),
    lambda s: s.write_text(json.dumps({**json.loads(s.read_text()), "indices": 5})),
    _npy_edit("labels", lambda a: np.full_like(a, 999)),
    _npy_edit("labels", lambda a: (a + 1) % 10),
    _npy_edit("features", lambda a: a[:, :3]),
    _npy_edit("features", lambda a: a[:1]),
    _npy_edit("features", lambda a: a.astype(np.complex64)),
    _npy_edit("features", lambda a: np.full_like(a, np.nan)),
    _huge,
], ids=["sidecar-list", "sidecar-indices-5", "labels-999", "labels-shifted", "3-channels", "1-row", "complex64",
        "nan-features", "huge-shape"])
def test_a_damaged_cache_chunk_is_rebuilt_not_used(tmp_path, tiny_checkpoint, damage):
    cache = tmp_path / "kc"
    first, info = _cached_deletion(tiny_checkpoint, cache, tmp_path / "first")
    assert info["misses"] and not info["rebuilt"]
    sidecar = next(cache.glob("*/c000000-*.json"))
    damage(sidecar)
    again, info = _cached_deletion(tiny_checkpoint, cache, tmp_path / "again")
    assert again == first, "the damaged chunk was used"
    assert info["rebuilt"] and info["misses"], info
    third, info = _cached_deletion(tiny_checkpoint, cache, tmp_path / "third")
    assert third == first and info["hits"] and not info["misses"] and not info["rebuilt"], info


def test_an_intact_imagefolder_cache_is_used(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    root = imagefolder(tmp_path / "a", per_class=(3, 2))
    cache = tmp_path / "cache"
    _deletion(ckpt, root, tmp_path / "one", cache)
    _deletion(ckpt, root, tmp_path / "two", cache)
    info = json.loads((tmp_path / "two" / "summary.json").read_text())["cache"]
    assert info["hits"] and not info["misses"] and not info["rebuilt"], info
