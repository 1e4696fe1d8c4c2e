"""Cached backbone features kept across the training runs of one process (a grid of seeds and variants).

Runs whose frozen backbones have equal weights, and which read the same images through
the same transform (and the same seeded views), compute equal features. A
:class:`SharedFeatures` passed to every :func:`~ersm_core.training.train` call of a grid
keeps the features the last run computed, under a key naming all of that, and hands
them to the next run with the same key instead of running the backbone again. It keeps
the last two keys (one for the training and validation images, one for the test images):
a grid trains its members seed by seed, so members sharing a backbone follow each other
(a pretrained or loaded backbone is the same for every seed; a randomly initialized one
is the same for every variant of one seed).

The test images' features are kept only here, in memory: a run on its own scores the
test split through the whole model, in the same batches, which gives the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from ersm_core.training.storage import FeaturePlan

__all__ = ["SharedFeatures"]


class SharedFeatures:
    """The features of the most recent passes (training and validation images; test images), by key.

    Keeps ``slots`` keys, dropping the least recently used. Use it as a context manager (or
    call :meth:`close`): a spilled or disk-backed entry's storage plan is closed when its
    features are dropped.
    """

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self._entries: dict[str, tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any], FeaturePlan | None]] = {}
        self.passes = 0  # backbone passes made (keys computed), over the object's life
        self.seconds = 0.0  # seconds those passes took

    def get(self, key: str) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]] | None:
        """(split → (features, labels), provenance record of the pass) kept under ``key``, or None."""
        if key not in self._entries:
            return None
        self._entries[key] = self._entries.pop(key)  # most recently used last
        splits, info, _ = self._entries[key]
        return dict(splits), dict(info)

    def put(self, key: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], info: dict[str, Any],
            plan: FeaturePlan | None, seconds: float) -> None:
        """Keep the features of a pass just made (``seconds`` long); the plan, if any, is now closed here."""
        self._drop(key)
        while len(self._entries) >= max(1, self.slots):
            self._drop(next(iter(self._entries)))
        self._entries[key] = (dict(splits), dict(info), plan)
        self.passes += 1
        self.seconds += float(seconds)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry[2] is not None:
            entry[2].close()

    def close(self) -> None:
        """Drop every kept feature and close the storage plans."""
        for key in list(self._entries):
            self._drop(key)

    def __enter__(self) -> "SharedFeatures":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
