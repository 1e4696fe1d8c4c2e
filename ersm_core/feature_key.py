"""What decides an image's backbone features: the key and checksums of every feature cache.

The evaluators' on-disk cache and the training run's frozen-backbone cache both
name an entry by :func:`key_digest` of a :func:`cache_key` and check the stored
files against their sha256 (:func:`ersm_core.files.file_sha256`) before reuse.
Torch-free: the key is plain data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ersm_core.plain import to_plain

__all__ = ["KEY_FORMAT", "cache_key", "key_digest", "is_sha256_hex"]

KEY_FORMAT = 2  # bumped whenever the meaning of a key field changes


def cache_key(
    checkpoint_sha256: str,
    dataset: str,
    split: str,
    transform: dict[str, Any],
    options: dict[str, Any],
    dataset_fingerprint: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fields that decide an image's features, as plain data.

    Args:
        checkpoint_sha256: sha256 of the weights that compute the features (a checkpoint
            file, or the frozen backbone's tensors during training).
        dataset: registered dataset name.
        split: dataset split.
        transform: the image transform's ``describe()``.
        options: dataset options (stored as strings).
        dataset_fingerprint: :meth:`ersm_core.data.ERSMDataset.fingerprint`, when known.
        **extra: anything else that changes the features (insertion point, dtype, device
            type, views, ...).
    """
    key: dict[str, Any] = {
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": dataset,
        "split": split,
        "transform": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(transform.items())},
        "options": {k: str(v) for k, v in sorted(options.items())},
        "format": KEY_FORMAT,
    }
    if dataset_fingerprint is not None:
        key["dataset_fingerprint"] = dataset_fingerprint
    key.update({k: to_plain(v) for k, v in extra.items()})
    return key


def key_digest(key: Any) -> str:
    """Hex sha256 of ``key`` as canonical JSON (sorted keys): the name of its cache entry."""
    return hashlib.sha256(json.dumps(to_plain(key), sort_keys=True).encode()).hexdigest()


def is_sha256_hex(value: Any) -> bool:
    """True for a 64-character lower-case hex string (a stored checksum worth comparing)."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
