"""The hooks a training run calls as it goes (the CLI draws progress bars with them)."""

from __future__ import annotations

from typing import Any

__all__ = ["TrainProgress"]


class TrainProgress:
    """Hooks :func:`ersm_core.training.train` calls as it goes; every one does nothing by default.

    The CLI subclasses it to show progress; tests use it to watch a run.
    """

    def message(self, text: str) -> None:
        """A line worth showing once (feature-cache size and place, resuming from a saved state)."""

    def start(self, epochs: int, train_batches: int, val_batches: int) -> None:
        """Before the first epoch, with the number of batches per epoch."""

    def features_start(self, split: str, n_images: int) -> None:
        """Before computing the frozen backbone's features of ``split`` (train, val or test) once."""

    def features_step(self, n_images: int) -> None:
        """After each batch of backbone features."""

    def epoch_start(self, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based)."""

    def train_step(self, n_images: int, running: dict[str, float]) -> None:
        """After each optimizer step; ``running`` holds the epoch's mean loss and accuracy so far."""

    def val_step(self, n_images: int) -> None:
        """After each batch of the end-of-epoch validation."""

    def epoch_end(self, row: dict[str, float]) -> None:
        """After the validation, with the epoch's history row (already written to the history file)."""

    def test_start(self, test_batches: int) -> None:
        """Before the one evaluation of the test split, after the last epoch."""

    def test_step(self, n_images: int) -> None:
        """After each test batch."""

    def test_end(self, metrics: dict[str, Any]) -> None:
        """After the test split, with the final metrics."""
