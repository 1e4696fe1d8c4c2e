"""Training a model variant: the ERSM paper's protocol (SPEC §1.7).

AdamW (lr 1e-3, weight decay 1e-4) over the parameters that require gradients,
a cosine schedule over all optimizer steps, loss = cross-entropy + the spatial
module's regularizer (``aux["reg_loss"]``: the expected energy for ERSM, the
expected L0 for ``l0``, zero otherwise) from one forward pass. Test accuracy and
the mean keep probability are measured after every epoch. A run is
deterministic on the CPU given its seed: the seed fixes the initialization, the
shuffling and the random flips.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ersm_core.checkpoint import file_sha256, save_checkpoint
from ersm_core.data import build_dataset, model_transform
from ersm_core.device import select_device
from ersm_core.errors import ConfigError, ERSMError
from ersm_core.model import ERSMModel, ModelConfig, build_model

__all__ = [
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "HISTORY_COLUMNS",
    "train",
    "evaluate",
    "history_path",
    "check_output_file",
    "write_history",
]

# train_* are means over the epoch's training images (model in training mode, as it learnt);
# test_acc and mean_keep (NaN without a gate) come from the end-of-epoch evaluation in eval
# mode; lr is the learning rate of the epoch's first step; seconds include the evaluation
HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_ce", "train_reg", "train_acc", "test_acc", "mean_keep", "lr", "seconds",
]

# options of the synthetic dataset that TrainConfig carries (field name = option name)
_SYNTHETIC_OPTIONS = ("num_classes", "n_train", "n_test", "spurious")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; ``asdict`` goes into the checkpoint's provenance."""

    dataset: str = "synthetic"  # a registered dataset: synthetic, cub, food101, pets, imagefolder
    data_root: str | None = None  # folder holding the dataset (unused by synthetic)
    epochs: int = 20  # passes over the training split
    batch_size: int = 32  # images per optimizer step
    lr: float = 1e-3  # AdamW peak learning rate, decayed by a cosine over all steps
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    seed: int = 0  # initialization, shuffling and flips
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto (cuda if present), cpu, cuda or cuda:N
    num_classes: int | None = None  # synthetic only: number of classes (dataset default 10)
    n_train: int | None = None  # synthetic only: training images (dataset default 2000)
    n_test: int | None = None  # synthetic only: test images (dataset default 500)
    spurious: float | None = None  # synthetic only: P(training background matches the label)
    limit_train: int | None = None  # train on a seeded random subset of this many images
    limit_test: int | None = None  # measure test accuracy on a seeded random subset of this many

    def __post_init__(self) -> None:
        if self.data_root is not None:
            object.__setattr__(self, "data_root", str(self.data_root))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be 0 or more, got {self.weight_decay}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers}")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 when given, got {value}")
        if self.dataset != "synthetic":
            given = [name for name in _SYNTHETIC_OPTIONS if getattr(self, name) is not None]
            if given:
                raise ConfigError(
                    f"option(s) {', '.join(given)} only apply to the synthetic dataset, not {self.dataset!r}"
                )

    def dataset_options(self) -> dict[str, Any]:
        """Keyword options for :func:`ersm_core.data.build_dataset` (only those given)."""
        if self.dataset != "synthetic":
            return {}
        return {name: getattr(self, name) for name in _SYNTHETIC_OPTIONS if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict for provenance."""
        return asdict(self)


class TrainProgress:
    """Hooks :func:`train` calls as it goes; every one does nothing by default.

    The CLI subclasses it to draw progress bars; tests use it to watch a run.
    """

    def start(self, epochs: int, train_batches: int, test_batches: int) -> None:
        """Before the first epoch, with the number of batches per epoch."""

    def epoch_start(self, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based)."""

    def train_step(self, n_images: int, running: dict[str, float]) -> None:
        """After each optimizer step; ``running`` holds the epoch's mean loss and accuracy so far."""

    def test_step(self, n_images: int) -> None:
        """After each test batch of the end-of-epoch evaluation."""

    def epoch_end(self, row: dict[str, float]) -> None:
        """After the evaluation, with the epoch's history row."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: ERSMModel  # trained, in eval mode, on the CPU
    class_names: list[str]
    history: pd.DataFrame  # one row per epoch, columns HISTORY_COLUMNS
    metrics: dict[str, Any]  # final train_loss, train_acc, test_acc, mean_keep (None without a gate)
    provenance: dict[str, Any] = field(default_factory=dict)  # for the checkpoint

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the checkpoint and ``<stem>.history.csv`` beside it, each atomically."""
        path = Path(path)
        ckpt = save_checkpoint(path, self.model, self.class_names, self.provenance)
        return ckpt, write_history(history_path(path), self.history)


def history_path(checkpoint: str | Path) -> Path:
    """``model.pt`` → ``model.history.csv`` in the same folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.history.csv")


def check_output_file(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing checkpoint path unless ``overwrite``; call before training starts."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a checkpoint file name such as {path / 'model.pt'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    return path


def write_history(path: str | Path, history: pd.DataFrame) -> Path:
    """Write the per-epoch CSV atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        history.to_csv(tmp, index=False, float_format="%.10g")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from its torch seed (set by the loader's generator)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _subset(dataset: Dataset, limit: int | None, seed: int, stream: int) -> Dataset:
    """A seeded random subset of ``limit`` items (sorted), or the whole dataset.

    Random rather than the first N, so datasets stored class by class keep every class.
    """
    if limit is None or limit >= len(dataset):
        return dataset
    picked = np.random.default_rng([seed, stream]).choice(len(dataset), size=limit, replace=False)
    return Subset(dataset, sorted(int(i) for i in picked))


def _join_process_group(device: torch.device) -> tuple[int, int, torch.device]:
    """Under torchrun (WORLD_SIZE > 1) join the process group (NCCL on CUDA, gloo otherwise).

    Returns (world size, rank, this process's device).
    """
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return 1, 0, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_world_size(), torch.distributed.get_rank(), device


def _loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device, *, shuffle: bool, seed: int,
            world: int = 1, rank: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if world > 1 and shuffle:
        # each process trains on its own share of every epoch (batch size is per process)
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=_seed_worker if workers else None,
        generator=generator,
        pin_memory=device.type == "cuda",
        # a last batch of one image breaks BatchNorm in training mode
        drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > 1,
    )


@torch.no_grad()
def evaluate(model: ERSMModel, loader: DataLoader, device: torch.device, progress: TrainProgress | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean keep probability (NaN without a gate) of ``model`` in eval mode.

    One pass per batch: in eval mode the spatial module's ``keep`` is the
    deterministic gate, the same values as ``token_scores(...)["keep"]``.
    """
    model.eval()
    correct, total, keep_sum, keep_count = 0, 0, 0.0, 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        logits, aux = model(images, return_aux=True)
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
        if "keep" in aux:
            keep_sum += float(aux["keep"].double().sum())
            keep_count += aux["keep"].numel()
        if progress is not None:
            progress.test_step(len(labels))
    return {
        "accuracy": correct / total if total else float("nan"),
        "mean_keep": keep_sum / keep_count if keep_count else float("nan"),
        "n": total,
    }


def _diverged(epoch: int, step: int, loss: float, ce: float, reg: float, lr: float) -> ERSMError:
    return ERSMError(
        f"training diverged at epoch {epoch}, step {step}: the loss is {loss} (cross-entropy {ce}, "
        f"regularizer {reg}) at learning rate {lr:.3g}. Nothing was written. Try a lower learning rate "
        f"(--lr, e.g. {lr / 10:.1g}) or smaller --alpha/--beta."
    )


def _sized_for(model: ERSMModel, num_classes: int) -> ERSMModel:
    """Give the model a freshly initialized head for ``num_classes`` when its config says otherwise."""
    if model.config.num_classes == num_classes:
        return model
    model.config = replace(model.config, num_classes=num_classes)
    model.head = nn.Linear(model.head.in_features, num_classes)
    return model


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    weights: str | Path | None = None,
    progress: TrainProgress | None = None,
) -> TrainResult:
    """Train a model variant and measure it after every epoch.

    Args:
        model_config: the model to build. Its ``num_classes`` is replaced by the
            training split's class count when they differ (the head is sized for
            the dataset), so callers need not know it in advance.
        train_config: dataset, schedule, seed and device.
        weights: optional local backbone state dict loaded before training.
        progress: hooks called during the run (progress bars).

    Returns:
        The trained model (eval mode, CPU), class names, per-epoch history, final
        metrics and the provenance to store in its checkpoint.

    Raises:
        ERSMError: a bad option or dataset, or a loss that stops being finite.

    Seeds torch's global RNG with ``train_config.seed``: with ``workers=0`` the
    random flips draw from it, interleaved with the model's own randomness
    (dropout, hard-concrete samples), so results differ between worker counts but
    are identical for the same seed and worker count (on the CPU).
    """
    progress = progress or TrainProgress()
    started = time.time()
    device = select_device(train_config.device)
    world, rank, device = _join_process_group(device)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, weights=str(weights) if weights else None)

    options = train_config.dataset_options()
    data = {
        split: build_dataset(
            train_config.dataset, split, model_transform(model, train=split == "train"),
            root=train_config.data_root, **options,
        )
        for split in ("train", "test")
    }
    class_names = list(data["train"].classes)
    if list(data["test"].classes) != class_names:
        raise ERSMError(
            f"dataset {train_config.dataset!r}: the train and test splits have different classes "
            f"({len(class_names)} vs {len(data['test'].classes)}); check the folder layout"
        )
    model = _sized_for(model, len(class_names)).to(device)
    train_set = _subset(data["train"], train_config.limit_train, train_config.seed, 1)
    test_set = _subset(data["test"], train_config.limit_test, train_config.seed, 2)
    train_loader = _loader(train_set, train_config.batch_size, train_config.workers, device, shuffle=True, seed=train_config.seed,
                           world=world, rank=rank)
    test_loader = _loader(test_set, train_config.batch_size, train_config.workers, device, shuffle=False, seed=train_config.seed)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    total_steps = max(1, train_config.epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    progress.start(train_config.epochs, len(train_loader), len(test_loader))
    rows: list[dict[str, float]] = []
    step = 0
    for epoch in range(1, train_config.epochs + 1):
        epoch_started = time.time()
        progress.epoch_start(epoch)
        epoch_lr = optimizer.param_groups[0]["lr"]
        model.train()
        if world > 1:
            train_loader.sampler.set_epoch(epoch)
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0.0}
        seen = 0
        for batch in train_loader:
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            logits, aux = net(images, return_aux=True)
            ce = F.cross_entropy(logits, labels)
            reg = aux["reg_loss"]
            loss = ce + reg
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise _diverged(epoch, step, loss_value, float(ce.detach()), float(reg.detach()), optimizer.param_groups[0]["lr"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(labels)
            seen += n
            sums["loss"] += loss_value * n
            sums["ce"] += float(ce.detach()) * n
            sums["reg"] += float(reg.detach()) * n
            sums["correct"] += float((logits.detach().argmax(1) == labels).sum())
            progress.train_step(n, {"loss": sums["loss"] / seen, "acc": sums["correct"] / seen})
        if world > 1:  # every process's share of the epoch, summed
            totals = torch.tensor([sums["loss"], sums["ce"], sums["reg"], sums["correct"], float(seen)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            sums = dict(zip(("loss", "ce", "reg", "correct"), totals[:4].tolist()))
            seen = int(totals[4].item())
        if seen and not all(math.isfinite(p.detach().abs().sum().item()) for p in params):
            raise _diverged(epoch, step, float("nan"), float("nan"), float("nan"), epoch_lr)
        test = evaluate(model, test_loader, device, progress)
        row = {
            "epoch": epoch,
            "train_loss": sums["loss"] / max(seen, 1),
            "train_ce": sums["ce"] / max(seen, 1),
            "train_reg": sums["reg"] / max(seen, 1),
            "train_acc": sums["correct"] / max(seen, 1),
            "test_acc": test["accuracy"],
            "mean_keep": test["mean_keep"],
            "lr": epoch_lr,
            "seconds": time.time() - epoch_started,
        }
        rows.append(row)
        progress.epoch_end(row)

    model.eval().cpu()
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    last = rows[-1]
    mean_keep = None if math.isnan(last["mean_keep"]) else last["mean_keep"]
    metrics = {
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_acc": last["test_acc"],
        "mean_keep": mean_keep,
    }
    provenance = {
        "dataset": train_config.dataset,
        "dataset_options": options,
        "data_root": train_config.data_root,
        "train_size": len(train_set),
        "test_size": len(test_set),
        "epochs": train_config.epochs,
        "seed": train_config.seed,
        **{f"final_{k}": v for k, v in metrics.items()},
        "train_config": train_config.to_dict(),
        "weights": str(weights) if weights else None,
        "weights_sha256": file_sha256(weights) if weights else None,
        "device": str(device),
        "world_size": world,
        "history": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows],
        "wall_seconds": round(time.time() - started, 3),
    }
    return TrainResult(model=model, class_names=class_names, history=history, metrics=metrics, provenance=provenance)
