"""Shared fixtures: tiny checkpoints trained in a few seconds on the synthetic data.

``tiny_checkpoint`` (ERSM-Full) and ``tiny_baseline_checkpoint`` are compact_cnn
models at 64 px (a 4×4 feature map, 16 tokens) for the 10 synthetic classes,
trained for one epoch on 192 images: their weights are real, their accuracy is
near chance. Evaluate them with ``--dataset synthetic`` (the test split's
``n_test`` option keeps evaluations small). ``train_tiny`` builds others.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes: one thread each, subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    # the worker is given a terminal size of 80 × 24; the commands' output (a pipe) is as in one process
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from ersm_core.model import ModelConfig
from ersm_core.training import TrainConfig, train

TINY_IMAGE_SIZE = 64  # compact_cnn: 64 px → 4×4 map
TINY_N_TRAIN = 192
TINY_N_TEST = 64


def train_tiny(path: Path, variant: str = "ersm_full", epochs: int = 1, seed: int = 0, **model_options) -> Path:
    """Train a compact_cnn ``variant`` on a small synthetic set and save it (and its history) at ``path``."""
    config = ModelConfig(num_classes=10, variant=variant, image_size=TINY_IMAGE_SIZE, **model_options)
    result = train(
        config,
        TrainConfig(dataset="synthetic", epochs=epochs, batch_size=32, seed=seed, device="cpu",
                    n_train=TINY_N_TRAIN, n_test=TINY_N_TEST),
    )
    result.save(path)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An ERSM-Full compact_cnn checkpoint (64 px, 10 synthetic classes, one short epoch)."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "ersm_full.pt", "ersm_full")


@pytest.fixture(scope="session")
def tiny_baseline_checkpoint(tmp_path_factory) -> Path:
    """The baseline counterpart of ``tiny_checkpoint`` (same data, seed and schedule)."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "baseline.pt", "baseline")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: tiny tensors stall under oversubscription on busy machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
