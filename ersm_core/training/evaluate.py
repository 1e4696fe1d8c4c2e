"""Accuracy and mean keep probability of a model on a loader (validation and test passes)."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader

from ersm_core.model import ERSMModel
from ersm_core.training.features import FromFeatures

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: ERSMModel, loader: DataLoader, device: torch.device, on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Top-1 accuracy and mean keep probability (NaN without a gate) of ``model`` in eval mode.

    Batches hold ``image`` (run through the whole model) or cached ``features``
    (run from the spatial module on). One pass per batch: in eval mode the spatial
    module's ``keep`` is the deterministic gate, the same values as
    ``token_scores(...)["keep"]``. ``on_batch(n)`` is called after each batch.
    """
    model.eval()
    head = FromFeatures(model)
    correct, total, keep_sum, keep_count = 0, 0, 0.0, 0
    for batch in loader:
        labels = batch["label"].to(device, non_blocking=True)
        if "features" in batch:
            logits, aux = head(batch["features"].to(device, non_blocking=True), return_aux=True)
        else:
            logits, aux = model(batch["image"].to(device, non_blocking=True), return_aux=True)
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
        if "keep" in aux:
            keep_sum += float(aux["keep"].double().sum())
            keep_count += aux["keep"].numel()
        if on_batch is not None:
            on_batch(len(labels))
    return {
        "accuracy": correct / total if total else float("nan"),
        "mean_keep": keep_sum / keep_count if keep_count else float("nan"),
        "n": total,
    }
