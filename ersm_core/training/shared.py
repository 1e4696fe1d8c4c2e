"""Cached backbone features kept across the training runs of one process (a grid of seeds and variants).

Runs whose frozen backbones have equal weights, and which read the same images through
the same transform (and the same seeded views), compute equal features. A
:class:`SharedFeatures` passed to every :func:`~ersm_core.training.train` call of a grid
keeps the features the last run computed, under a key naming all of that, and hands
them to the next run with the same key instead of running the backbone again. It keeps
one key at a time: a grid trains its members seed by seed, so members sharing a
backbone follow each other (a pretrained or loaded backbone is the same for every seed;
a randomly initialized one is the same for every variant of one seed).
"""

from __future__ import annotations

from typing import Any

import torch

from ersm_core.training.storage import FeaturePlan

__all__ = ["SharedFeatures"]


class SharedFeatures:
    """The features of the most recent cached run, for the next run with the same key.

    Use it as a context manager (or call :meth:`close`): a spilled or disk-backed entry's
    storage plan is closed when the features are dropped.
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._info: dict[str, Any] = {}
        self._plan: FeaturePlan | None = None
        self.passes = 0  # backbone passes made (keys computed), over the object's life
        self.seconds = 0.0  # seconds those passes took

    def get(self, key: str) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]] | None:
        """(split → (features, labels), provenance record of the pass) kept under ``key``, or None."""
        if key != self._key:
            return None
        return dict(self._splits), dict(self._info)

    def put(self, key: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], info: dict[str, Any],
            plan: FeaturePlan) -> None:
        """Keep the features of a pass just made (dropping the previous ones); the plan is now closed here."""
        self.close()
        self._key, self._splits, self._info, self._plan = key, dict(splits), dict(info), plan
        self.passes += 1
        self.seconds += float(info.get("seconds", 0.0))

    def close(self) -> None:
        """Drop the kept features and close their storage plan."""
        plan, self._plan = self._plan, None
        self._key, self._splits, self._info = None, {}, {}
        if plan is not None:
            plan.close()

    def __enter__(self) -> "SharedFeatures":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
