"""On-disk cache of backbone features for feature-level evaluations (``--cache DIR``).

An entry is keyed by everything that determines the features: the checkpoint's
sha256, the dataset name and options, the split and the image transform. Any
change of key is a different entry (a miss). Features are stored in chunks of
consecutive dataset indices as ``.npy`` files with a sidecar holding their
sha256; a chunk whose bytes no longer match (corruption, truncation) is
detected, discarded and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ersm_core.errors import ConfigError

__all__ = ["FeatureCache", "cache_key"]

CHUNK = 256  # dataset indices per chunk file


def cache_key(checkpoint_sha256: str, dataset: str, split: str, transform: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide an image's features."""
    return {
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": dataset,
        "split": split,
        "transform": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(transform.items())},
        "options": {k: str(v) for k, v in sorted(options.items())},
        "format": 1,
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Features [C, H, W] (float32) and labels per dataset index, in chunk files.

    Each chunk is three files named by its chunk number and a digest of its index
    list: ``.features.npy``, ``.labels.npy`` and a ``.json`` sidecar (written last)
    holding the indices and both files' sha256. Processes of a distributed run
    write disjoint index sets, hence distinct files: no shared manifest to race on.

    Args:
        root: the ``--cache`` folder (created if missing).
        key: :func:`cache_key` fields; the entry lives in ``root/<sha256(key)[:20]>``.
    """

    def __init__(self, root: str | Path, key: dict[str, Any]) -> None:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--cache {root} is a file; give a folder")
        self.key = key
        self.dir = root / _digest(key)[:20]
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.exists():
            _atomic_write_bytes(key_file, json.dumps(key, indent=1, sort_keys=True).encode())
        self.hits = 0  # chunks served from the cache
        self.misses = 0  # chunks computed
        self.rebuilt: list[str] = []  # chunk files found corrupt and dropped

    @staticmethod
    def chunk_of(index: int) -> int:
        """The chunk number of a dataset index."""
        return index // CHUNK

    def _stem(self, chunk: int, indices: list[int]) -> Path:
        return self.dir / f"c{chunk:06d}-{_digest([int(i) for i in indices])[:12]}"

    def load_chunk(self, chunk: int, needed: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(indices, features, labels) for ``needed`` from a cached chunk, or None on a miss.

        A chunk whose files fail their checksum is deleted and counts as a miss.
        """
        want = set(int(i) for i in needed)
        for sidecar in sorted(self.dir.glob(f"c{chunk:06d}-*.json")):
            try:
                entry = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                self._drop(sidecar)
                continue
            if not want <= set(entry.get("indices", [])):
                continue
            stem = sidecar.with_suffix("")
            try:
                blobs = (Path(f"{stem}.features.npy").read_bytes(), Path(f"{stem}.labels.npy").read_bytes())
            except OSError:
                self._drop(sidecar)
                continue
            sums = [hashlib.sha256(b).hexdigest() for b in blobs]
            if sums != [entry.get("features_sha256"), entry.get("labels_sha256")]:
                self._drop(sidecar)
                continue
            feats = np.load(io.BytesIO(blobs[0]), allow_pickle=False)
            labels = np.load(io.BytesIO(blobs[1]), allow_pickle=False)
            indices = np.asarray(entry["indices"], dtype=np.int64)
            keep = np.isin(indices, sorted(want))
            self.hits += 1
            return indices[keep], feats[keep], labels[keep]
        return None

    def _drop(self, sidecar: Path) -> None:
        stem = sidecar.with_suffix("")
        self.rebuilt.append(stem.name)
        for p in (sidecar, Path(f"{stem}.features.npy"), Path(f"{stem}.labels.npy")):
            p.unlink(missing_ok=True)

    def store_chunk(self, chunk: int, indices: np.ndarray, features: np.ndarray, labels: np.ndarray) -> None:
        """Write one chunk (features float32 [n, C, H, W], labels int64 [n]); the sidecar goes last."""
        self.misses += 1
        blobs = []
        for arr in (np.ascontiguousarray(features, dtype=np.float32), np.asarray(labels, dtype=np.int64)):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            blobs.append(buf.getvalue())
        idx = [int(i) for i in indices]
        stem = self._stem(chunk, idx)
        _atomic_write_bytes(Path(f"{stem}.features.npy"), blobs[0])
        _atomic_write_bytes(Path(f"{stem}.labels.npy"), blobs[1])
        entry = {
            "indices": idx,
            "features_sha256": hashlib.sha256(blobs[0]).hexdigest(),
            "labels_sha256": hashlib.sha256(blobs[1]).hexdigest(),
        }
        _atomic_write_bytes(Path(f"{stem}.json"), json.dumps(entry).encode())
