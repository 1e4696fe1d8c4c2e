"""On-disk cache of backbone features for feature-level evaluations (``--cache DIR``).

An entry is keyed by everything that determines the features: the checkpoint's
sha256, the dataset name and options, the split and the image transform. Any
change of key is a different entry (a miss). Features are stored in chunks of
consecutive dataset indices as ``.npy`` files, each listed in a manifest with
its sha256; a chunk whose bytes no longer match (corruption, truncation) is
detected, discarded and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
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
        self.manifest_path = self.dir / "manifest.json"
        self.manifest = self._read_manifest()
        self.rebuilt: list[int] = []  # chunks found corrupt and dropped

    # -- manifest -------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
            if data.get("key") != self.key:
                return {"key": self.key, "chunks": {}}
            return data
        except (OSError, ValueError):
            return {"key": self.key, "chunks": {}}

    def _write_manifest(self) -> None:
        _atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    # -- chunks ---------------------------------------------------------------------
    @staticmethod
    def chunk_of(index: int) -> int:
        return index // CHUNK

    def _paths(self, chunk: int) -> tuple[Path, Path]:
        return self.dir / f"chunk_{chunk:06d}.features.npy", self.dir / f"chunk_{chunk:06d}.labels.npy"

    def load_chunk(self, chunk: int, needed: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(indices, features, labels) of a cached chunk covering ``needed``, or None on a miss.

        A chunk whose files fail their checksum is deleted and counts as a miss.
        """
        entry = self.manifest["chunks"].get(str(chunk))
        if entry is None or not set(needed) <= set(entry["indices"]):
            return None
        feat_path, label_path = self._paths(chunk)
        try:
            blobs = feat_path.read_bytes(), label_path.read_bytes()
        except OSError:
            blobs = None
        if blobs is None or [hashlib.sha256(b).hexdigest() for b in blobs] != [entry["features_sha256"], entry["labels_sha256"]]:
            self._drop(chunk)
            return None
        import io

        feats = np.load(io.BytesIO(blobs[0]), allow_pickle=False)
        labels = np.load(io.BytesIO(blobs[1]), allow_pickle=False)
        indices = np.asarray(entry["indices"], dtype=np.int64)
        keep = np.isin(indices, needed)
        return indices[keep], feats[keep], labels[keep]

    def _drop(self, chunk: int) -> None:
        self.rebuilt.append(chunk)
        self.manifest["chunks"].pop(str(chunk), None)
        for p in self._paths(chunk):
            p.unlink(missing_ok=True)
        self._write_manifest()

    def store_chunk(self, chunk: int, indices: np.ndarray, features: np.ndarray, labels: np.ndarray) -> None:
        """Write one chunk (features float32 [n, C, H, W], labels int64 [n]) and record it."""
        import io

        blobs = []
        for arr in (np.ascontiguousarray(features, dtype=np.float32), np.asarray(labels, dtype=np.int64)):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            blobs.append(buf.getvalue())
        feat_path, label_path = self._paths(chunk)
        _atomic_write_bytes(feat_path, blobs[0])
        _atomic_write_bytes(label_path, blobs[1])
        self.manifest["chunks"][str(chunk)] = {
            "indices": [int(i) for i in indices],
            "features_sha256": hashlib.sha256(blobs[0]).hexdigest(),
            "labels_sha256": hashlib.sha256(blobs[1]).hexdigest(),
        }
        self._write_manifest()
