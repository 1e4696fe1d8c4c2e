"""On-disk cache of backbone features for feature-level evaluations (``--cache DIR``).

An entry is keyed by everything that determines the features: the checkpoint's
sha256 (the backbone weights and the model config, hence the insertion point),
the dataset name, options and split, the dataset's fingerprint (its class, folder,
class names and every file it reads with resolved path, size and modification
time; for generated data the generator options), the image transform, the
insertion point's map size, the feature dtype, the device type and the versions
of ersm-eval and torch. Any change of key is a different entry (a miss): a
second copy of a dataset in another folder, or an image edited in place, never
gets the first one's features. :func:`ersm_eval.features.feature_batches` binds
the dataset and model part of the key (:meth:`FeatureCache.bind`) before the
first chunk is read. Features are stored in chunks of
consecutive dataset indices as ``.npy`` files with a sidecar holding their
sha256; a chunk whose bytes no longer match (corruption, truncation) is
detected, discarded and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ersm_core.feature_key import cache_key, key_digest
from ersm_core.plain import to_plain
from ersm_core.errors import ConfigError
from ersm_core.files import atomic_write_bytes, read_npy_header
from ersm_eval.results import read_json_file

__all__ = ["FeatureCache", "cache_key"]

CHUNK = 256  # dataset indices per chunk file
_SIDECAR_MAX_BYTES = 64 * 1024  # a sidecar lists at most CHUNK indices and two digests: a few KiB


class _CorruptSidecar(Exception):
    """A sidecar :func:`~ersm_eval.results.read_json_file` refuses: the chunk is rebuilt."""


def _valid_content(indices: np.ndarray, feats: np.ndarray, labels: np.ndarray, n_classes: int | None,
                   labels_of: Callable[[np.ndarray], np.ndarray | None] | None) -> bool:
    """Features finite, labels within [0, n_classes) and equal to the dataset's (when known)."""
    if not np.isfinite(feats).all():
        return False
    if labels.size and int(labels.min()) < 0:
        return False
    if n_classes is not None and labels.size and int(labels.max()) >= n_classes:
        return False
    if labels_of is not None:
        expected = labels_of(indices)
        if expected is not None and not np.array_equal(np.asarray(expected, dtype=np.int64), labels):
            return False
    return True


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
        self.root = root
        self.key = dict(key)
        self.dir = root / key_digest(self.key)[:20]
        self._ready = False  # the entry folder is created at the first read or write
        self.hits = 0  # chunks served from the cache
        self.misses = 0  # chunks computed
        self.rebuilt: list[str] = []  # chunk files found corrupt and dropped

    def bind(self, dataset: Any = None, **extra: Any) -> "FeatureCache":
        """Add the dataset's fingerprint and ``extra`` fields (insertion point, dtype, ...) to the key.

        Must be called before the first chunk is read or written (the entry folder
        is named by the whole key).
        """
        if self._ready:
            raise RuntimeError("bug: FeatureCache.bind after the cache was used")
        if dataset is not None:
            self.key["dataset_fingerprint"] = dataset.fingerprint()
        self.key.update({k: to_plain(v) for k, v in extra.items()})
        self.dir = self.root / key_digest(self.key)[:20]
        return self

    def _ensure_dir(self) -> None:
        if self._ready:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir / "key.json"
        if not key_file.exists():
            atomic_write_bytes(key_file, json.dumps(self.key, indent=1, sort_keys=True).encode())
        self._ready = True

    @staticmethod
    def chunk_of(index: int) -> int:
        """The chunk number of a dataset index."""
        return index // CHUNK

    def _stem(self, chunk: int, indices: list[int]) -> Path:
        return self.dir / f"c{chunk:06d}-{key_digest([int(i) for i in indices])[:12]}"

    def load_chunk(self, chunk: int, needed: list[int], feature_shape: tuple[int, ...] | None = None,
                   n_classes: int | None = None,
                   labels_of: Callable[[np.ndarray], np.ndarray | None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(indices, features, labels) for ``needed`` from a cached chunk, or None on a miss.

        A chunk that is not exactly what :meth:`store_chunk` writes counts as corrupt: it is
        deleted (listed in ``rebuilt``) and counts as a miss. Checked before use: the sidecar
        (a JSON object, a list of distinct indices of this chunk, two sha256), each file's
        ``.npy`` header (read before the data: features float32 [n, *feature_shape], labels
        int64 [n], n the sidecar's index count, sizes equal to the files'), both checksums,
        finite features, labels in [0, n_classes) and, when ``labels_of`` gives them, equal
        to the dataset's labels of those indices.
        """
        self._ensure_dir()
        want = set(int(i) for i in needed)
        for sidecar in sorted(self.dir.glob(f"c{chunk:06d}-*.json")):
            entry = self._read_sidecar(sidecar, chunk)
            if entry is None:
                self._drop(sidecar)
                continue
            if not want <= set(entry["indices"]):
                continue
            loaded = self._read_arrays(sidecar.with_suffix(""), entry, feature_shape)
            if loaded is None:
                self._drop(sidecar)
                continue
            feats, labels = loaded
            indices = np.asarray(entry["indices"], dtype=np.int64)
            if not _valid_content(indices, feats, labels, n_classes, labels_of):
                self._drop(sidecar)
                continue
            keep = np.isin(indices, sorted(want))
            self.hits += 1
            return indices[keep], feats[keep], labels[keep]
        return None

    def _read_sidecar(self, sidecar: Path, chunk: int) -> dict[str, Any] | None:
        """The sidecar's content when it is what :meth:`store_chunk` writes, else None (corrupt)."""
        try:  # the defensive reader of summary.json: size, nesting and numbers bounded, an object at the top
            entry = read_json_file(sidecar, _CorruptSidecar, max_bytes=_SIDECAR_MAX_BYTES, max_depth=2)
        except _CorruptSidecar:
            return None
        indices = entry.get("indices")
        if not isinstance(indices, list) or not 1 <= len(indices) <= CHUNK:
            return None
        low, high = chunk * CHUNK, (chunk + 1) * CHUNK
        if not all(isinstance(i, int) and not isinstance(i, bool) and low <= i < high for i in indices):
            return None
        if len(set(indices)) != len(indices) or sidecar.stem != self._stem(chunk, indices).name:
            return None
        for name in ("features_sha256", "labels_sha256"):
            digest = entry.get(name)
            if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                return None
        return entry

    @staticmethod
    def _read_arrays(stem: Path, entry: dict[str, Any], feature_shape: tuple[int, ...] | None,
                     ) -> tuple[np.ndarray, np.ndarray] | None:
        """Features and labels of a chunk, each header checked before its data is read; None if corrupt."""
        n = len(entry["indices"])
        out = []
        for suffix, digest, dtype, shape in (
            ("features", entry["features_sha256"], np.dtype("<f4"), None if feature_shape is None else (n, *feature_shape)),
            ("labels", entry["labels_sha256"], np.dtype("<i8"), (n,)),
        ):
            try:
                with open(f"{stem}.{suffix}.npy", "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    header = read_npy_header(fh)
                    got_shape = header.shape
                    if header.dtype != dtype or header.fortran_order or (shape is not None and got_shape != shape):
                        return None
                    if len(got_shape) != (4 if suffix == "features" else 1) or got_shape[0] != n:
                        return None
                    if header.offset + header.nbytes != size:  # the header's claim must be the file's actual size
                        return None
                    fh.seek(0)
                    blob = fh.read(size + 1)
            except (OSError, ValueError, EOFError):
                return None
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
                return None
            try:
                out.append(np.load(io.BytesIO(blob), allow_pickle=False))
            except (OSError, ValueError, EOFError):
                return None
        return out[0], out[1]

    def _drop(self, sidecar: Path) -> None:
        stem = sidecar.with_suffix("")
        self.rebuilt.append(stem.name)
        for p in (sidecar, Path(f"{stem}.features.npy"), Path(f"{stem}.labels.npy")):
            p.unlink(missing_ok=True)

    def store_chunk(self, chunk: int, indices: np.ndarray, features: np.ndarray, labels: np.ndarray) -> None:
        """Write one chunk (features float32 [n, C, H, W], labels int64 [n]); the sidecar goes last."""
        self._ensure_dir()
        self.misses += 1
        blobs = []
        for arr in (np.ascontiguousarray(features, dtype=np.float32), np.asarray(labels, dtype=np.int64)):
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            blobs.append(buf.getvalue())
        idx = [int(i) for i in indices]
        stem = self._stem(chunk, idx)
        atomic_write_bytes(Path(f"{stem}.features.npy"), blobs[0])
        atomic_write_bytes(Path(f"{stem}.labels.npy"), blobs[1])
        entry = {
            "indices": idx,
            "features_sha256": hashlib.sha256(blobs[0]).hexdigest(),
            "labels_sha256": hashlib.sha256(blobs[1]).hexdigest(),
        }
        atomic_write_bytes(Path(f"{stem}.json"), json.dumps(entry).encode())
