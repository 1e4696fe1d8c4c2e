"""Where a training run's cached features live: memory, a cache folder, or a spill folder.

In memory by default. With ``feature_cache_dir`` each split's features are an entry
of that folder, named by the digest of a :func:`ersm_core.feature_key.cache_key`
(the frozen backbone's weights, the dataset and its fingerprint, the transform, the
images and views, the device type): ``features.npy`` [V, N, C, H, W] float32 and
``labels.npy`` [N] int64, memory-mapped (``numpy.lib.format.open_memmap``) while they
are written and read, and ``entry.json`` written last with both files' sha256. A
later run with the same key checks the checksums and reuses the entry; a damaged or
partial entry is rebuilt. Without a folder, a cache larger than
:data:`~ersm_core.training.features.MEMORY_SHARE` of memory spills to a temporary
folder that is removed when the run ends.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ersm_core.feature_key import cache_key, is_sha256_hex, key_digest
from ersm_core.files import atomic_write_text, file_sha256, read_npy_header
from ersm_core.training.features import fits_in_memory

__all__ = ["DiskEntry", "FeaturePlan", "plan_storage", "entry_key", "weights_sha256"]

_ENTRY_MAX_BYTES = 256 * 1024  # entry.json holds the key and two digests


def weights_sha256(module: torch.nn.Module) -> str:
    """Hex sha256 of a module's state dict (names, dtypes, shapes and bytes), in order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class DiskEntry:
    """One split's cached features in ``root/train-<digest>/`` (see the module docstring)."""

    def __init__(self, root: Path, key: dict[str, Any], shape: tuple[int, ...]) -> None:
        self.key, self.shape = key, tuple(int(n) for n in shape)
        self.dir = Path(root) / f"train-{key_digest(key)[:20]}"
        self._writing: tuple[np.memmap, np.memmap] | None = None

    def _files(self) -> tuple[Path, Path, Path]:
        return self.dir / "features.npy", self.dir / "labels.npy", self.dir / "entry.json"

    def load(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The stored (features, labels) as memory-mapped tensors, or None unless the entry is whole and matches."""
        feats, labels, entry_file = self._files()
        try:
            if not entry_file.is_file() or entry_file.stat().st_size > _ENTRY_MAX_BYTES:
                return None
            entry = json.loads(entry_file.read_text(encoding="utf-8"))
            if not isinstance(entry, dict) or entry.get("key") != self.key:
                return None
            arrays = []
            for path, name, dtype, shape in ((feats, "features", "<f4", self.shape), (labels, "labels", "<i8", self.shape[1:2])):
                digest = entry.get(f"{name}_sha256")
                with open(path, "rb") as fh:
                    header = read_npy_header(fh)
                if (not is_sha256_hex(digest) or header.shape != shape or header.dtype != np.dtype(dtype)
                        or header.fortran_order or path.stat().st_size != header.offset + header.nbytes
                        or file_sha256(path) != digest):
                    return None
                arrays.append(np.load(path, mmap_mode="c", allow_pickle=False))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return None
        return torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1])

    def create(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh memory-mapped (features, labels) tensors to fill, under temporary names until :meth:`commit`."""
        self.dir.mkdir(parents=True, exist_ok=True)
        feats, labels, entry_file = self._files()
        entry_file.unlink(missing_ok=True)  # a stale entry stops matching before its files change
        self._tmp = [Path(tempfile.mkstemp(prefix=f".{p.name}.", suffix=".partial", dir=self.dir)[1]) for p in (feats, labels)]
        f = np.lib.format.open_memmap(self._tmp[0], mode="w+", dtype="<f4", shape=self.shape)
        lab = np.lib.format.open_memmap(self._tmp[1], mode="w+", dtype="<i8", shape=self.shape[1:2])
        self._writing = (f, lab)
        return torch.from_numpy(f), torch.from_numpy(lab)

    def commit(self) -> None:
        """Flush the filled files, move them to their names, then write ``entry.json`` with their sha256."""
        if self._writing is None:
            raise RuntimeError("DiskEntry.commit() needs create() first")
        for array in self._writing:
            array.flush()
        feats, labels, entry_file = self._files()
        for tmp, final in zip(self._tmp, (feats, labels)):
            tmp.replace(final)
        entry = {"key": self.key, "features_sha256": file_sha256(feats), "labels_sha256": file_sha256(labels),
                 "shape": list(self.shape), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(entry_file, json.dumps(entry, indent=1, sort_keys=True))
        self._writing = None

    def abandon(self) -> None:
        """Remove the temporary files of an entry that was not committed."""
        for tmp in getattr(self, "_tmp", []):
            Path(tmp).unlink(missing_ok=True)


@dataclass
class FeaturePlan:
    """Where the cached features of a run go, and what they cost."""

    storage: str  # 'memory', 'disk' (feature_cache_dir) or 'spill' (a temporary folder)
    n_bytes: int  # features of every split, float32
    root: Path | None = None  # the folder of disk and spill entries
    spill: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One line for the user, said before the features are computed."""
        size = f"{self.n_bytes / 2**20:,.1f} MiB"
        if self.storage == "memory":
            return f"feature cache: {size} in memory, no disk"
        where = "the cache folder" if self.storage == "disk" else "a temporary folder (it would not fit in memory)"
        return f"feature cache: {size} on disk in {where} {self.root}, memory-mapped (memory: a batch at a time)"

    def close(self) -> None:
        """Remove a spill folder (nothing for memory or a kept cache folder)."""
        if self.spill is not None:
            self.spill.cleanup()
            self.spill = None


def plan_storage(n_bytes: int, cache_dir: str | Path | None) -> FeaturePlan:
    """Memory, the given cache folder, or (too big for memory) a temporary spill folder."""
    if cache_dir is not None:
        return FeaturePlan("disk", n_bytes, Path(cache_dir))
    if fits_in_memory(n_bytes):
        return FeaturePlan("memory", n_bytes)
    spill = tempfile.TemporaryDirectory(prefix="ersm-train-features-")
    return FeaturePlan("spill", n_bytes, Path(spill.name), spill)


def entry_key(backbone_sha256: str, data: Any, split: str, indices: list[int], flips: np.ndarray | None,
              device_type: str, dataset: str, options: dict[str, Any]) -> dict[str, Any]:
    """The cache key of one split's training features."""
    return cache_key(
        backbone_sha256, dataset, split, data.transform.describe(), options, data.fingerprint(),
        indices_sha256=hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest(),
        flips_sha256=None if flips is None else hashlib.sha256(np.packbits(flips).tobytes() + str(flips.shape).encode()).hexdigest(),
        insertion="backbone.forward_features", dtype="float32", device_type=device_type, use="training",
    )
