"""What every evaluator and every model an evaluator reads must offer.

:class:`Evaluator` is the one shape of deletion, occlusion and sparsity: the model
and the settings go into the constructor; ``update(batch)`` adds one batch of
images (a dict with ``image``, ``label``, ``index``, and ``mask`` / ``has_mask`` /
``box`` where known); ``records()`` returns the per-image numpy arrays (image axis
first, gathered across processes under torchrun); ``compute(records)`` turns
records, in any order, into the tables keyed by file name. An evaluator that saw no
image raises the same error from ``records()`` and ``compute()``
(:func:`ersm_eval.records.no_images_error`).

:class:`SpatialClassifier` is what :func:`ersm_eval.adapter.wrap` returns and what
the evaluators may use of a model: the backbone's feature map, the token grid,
the pool → head split, the per-token scores and the normalization of its inputs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

__all__ = ["Evaluator", "SpatialClassifier"]


@runtime_checkable
class Evaluator(Protocol):
    """Accumulate, then compute: the contract of every evaluator.

    Attributes:
        model: the wrapped model the evaluator runs.
        n_images: images added since the last reset.
    """

    model: Any

    @property
    def n_images(self) -> int: ...

    def reset(self) -> None:
        """Forget every update."""

    def update(self, batch: dict[str, Any]) -> None:
        """Evaluate one batch and keep its per-image records."""

    def records(self) -> dict[str, np.ndarray]:
        """Per-image arrays, image axis first, in update order."""

    def compute(self, records: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
        """The tables (file name → DataFrame) of records in any order."""


@runtime_checkable
class SpatialClassifier(Protocol):
    """A classifier split at its last spatial feature map: features → gate → pool → head.

    Attributes:
        config: ``patch_size``, ``num_classes``, ``variant`` and ``image_size``.
        grid: the token grid (h, w) of the feature map.
        n_tokens: h · w.
        has_gate: the model has a keep map π (ERSM variants).
        has_energy: the model has Energy-Mask Layer energies.
        head_is_linear: the head is one affine map of the pooled vector (exact CAM).
        mean: the normalization mean of its inputs (may be empty when unknown).
        std: its standard deviation.
        head: the classifier layer.
    """

    config: Any
    grid: tuple[int, int]
    n_tokens: int
    has_gate: bool
    has_energy: bool
    head_is_linear: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def forward_features(self, images: torch.Tensor) -> torch.Tensor: ...

    def gate(self, features: torch.Tensor) -> torch.Tensor: ...

    def pool(self, features: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor: ...

    def token_scores(self, features: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def eval(self) -> Any: ...

    def parameters(self) -> Any: ...
