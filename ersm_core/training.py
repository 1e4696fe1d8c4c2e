"""Training a model variant: the ERSM paper's protocol (SPEC §1.7).

AdamW (lr 1e-3, weight decay 1e-4) over the parameters that require gradients,
a cosine schedule over all optimizer steps, loss = cross-entropy + the spatial
module's regularizer (``aux["reg_loss"]``: the expected energy for ERSM, the
expected L0 for ``l0``, zero otherwise) from one forward pass.

Images: ``limit_train`` / ``limit_test`` pick seeded, class-stratified subsets
(:mod:`ersm_core.data.subset`, the rule every command shares); a seeded,
stratified validation share (``val_fraction``) is then carved from the training
images. Validation accuracy and mean keep probability are measured after every
epoch; the test split is scored once, after the last epoch, so no choice is made
on it.

With a frozen backbone its features never change, so by default they are
computed once per image (``feature_cache``; the unaugmented image, or
``feature_views`` seeded flipped/unflipped views) and kept in memory; the
spatial module and head then train from them for every epoch. Without
augmentation this gives the same history as running the backbone every epoch,
to float rounding.

A run is deterministic on the CPU given its seed: the seed fixes the
initialization, the shuffling and the random flips.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ersm_core.checkpoint import save_checkpoint
from ersm_core.data import build_dataset, model_transform
from ersm_core.data.base import first_class_difference
from ersm_core.data.subset import dataset_labels, indices_sha256, stratified_split, stratified_subset, subset_record
from ersm_core.device import select_device
from ersm_core.errors import ConfigError, ERSMError
from ersm_core.files import atomic_path, file_sha256
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
# val_acc and val_keep (NaN without a gate or without a validation share) come from the
# end-of-epoch evaluation of the validation images in eval mode; test_acc and test_keep are
# measured once, after the last epoch, and are NaN in every other row; lr is the learning rate
# of the epoch's first step; seconds include the validation
HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_ce", "train_reg", "train_acc", "val_acc", "val_keep", "test_acc", "test_keep",
    "lr", "seconds",
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
    limit_train: int | None = None  # use a seeded, class-stratified subset of this many training-split images
    limit_test: int | None = None  # score the test split on a seeded, class-stratified subset of this many
    subset_seed: int = 0  # seed of the limit subsets and of the validation split (same images as the evaluators' --limit)
    val_fraction: float = 0.1  # share of the training images held out (stratified) and scored after every epoch
    augment: bool = True  # random horizontal flips of training images (cached features: see feature_views)
    feature_cache: bool | None = None  # compute a frozen backbone's features once; None = on when the backbone is frozen
    feature_views: int = 0  # cached training: 0 = the unaugmented image only; K = K seeded (randomly flipped) views per image

    def __post_init__(self) -> None:
        if self.data_root is not None:
            object.__setattr__(self, "data_root", str(self.data_root))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number, 0 or more, got {self.weight_decay}")
        if self.seed < 0:
            raise ConfigError(f"seed must be 0 or more, got {self.seed}")
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
        if not (0.0 <= self.val_fraction < 1.0 and math.isfinite(self.val_fraction)):
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.feature_views < 0:
            raise ConfigError(f"feature_views must be 0 or more, got {self.feature_views}")
        if self.feature_views and self.feature_cache is False:
            raise ConfigError("feature_views applies to cached training only; drop --feature-views or --no-feature-cache")
        if self.subset_seed < 0:
            raise ConfigError(f"subset_seed must be 0 or more, got {self.subset_seed}")

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

    The CLI subclasses it to show progress; tests use it to watch a run.
    """

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


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: ERSMModel  # trained, in eval mode, on the CPU
    class_names: list[str]
    history: pd.DataFrame  # one row per epoch, columns HISTORY_COLUMNS
    metrics: dict[str, Any]  # final train_loss, train_acc, val_acc, test_acc, mean_keep (test; None without a gate)
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
    """Refuse an existing checkpoint, or a history CSV of another run beside it, unless ``overwrite``.

    Call before training starts.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a checkpoint file name such as {path / 'model.pt'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    history = history_path(path)
    if history.is_dir():
        raise ConfigError(f"{history} is a folder where this run would write its history; choose another --out")
    if history.exists() and not overwrite:
        raise ConfigError(
            f"{history} already exists (the history of another run); pass --overwrite to replace it or choose another --out"
        )
    return path


def write_history(path: str | Path, history: pd.DataFrame) -> Path:
    """Write the per-epoch CSV atomically (see :func:`ersm_core.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        history.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from its torch seed (set by the loader's generator)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _join_process_group(device: torch.device) -> tuple[int, int, torch.device]:
    """Under torchrun (WORLD_SIZE > 1) join the process group (NCCL on CUDA, gloo otherwise).

    Returns (world size, rank, this process's device).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return 1, 0, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_world_size(), torch.distributed.get_rank(), device


def _loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device, *, shuffle: bool, seed: int,
            world: int = 1, rank: int = 0, collate_fn: Callable | None = None) -> DataLoader:
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
        collate_fn=collate_fn,
        # a last batch of one image breaks BatchNorm in training mode
        drop_last=shuffle and len(dataset) % batch_size == 1 and len(dataset) > 1,
    )


# -- cached backbone features -----------------------------------------------------------


class _FromFeatures(nn.Module):
    """The part of a model after the backbone: spatial module → pool → head, on cached features.

    :meth:`ERSMModel.forward_from_features` as a module (DDP wraps modules).
    """

    def __init__(self, model: ERSMModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, return_aux: bool = False):
        return self.model.forward_from_features(features, return_aux)


class _FeatureSet(Dataset):
    """Cached features [V, N, C, H, W] with labels; item i of an epoch uses one of its V views.

    The view of each image in each epoch is drawn from a generator seeded by
    (seed, epoch), so a run is reproducible whatever the loader does.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        self.features = features
        self.labels = labels
        self.seed = seed
        self.views = torch.zeros(features.shape[1], dtype=torch.long)

    def set_epoch(self, epoch: int) -> None:
        if self.features.shape[0] > 1:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self.views = torch.randint(self.features.shape[0], (self.features.shape[1],), generator=generator)

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[self.views[i], i], "label": self.labels[i]}

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        """A whole batch in one gather (the loader's sampler, hence the order, is unchanged)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"features": self.features[self.views[index], index], "label": self.labels[index]}

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        """:meth:`__getitems__` already returns a batch."""
        return batch


def _view_flips(indices: list[int], views: int, seed: int) -> np.ndarray:
    """[views, len(indices)] booleans: whether view v of dataset image i is flipped (seeded by seed, v, i)."""
    return np.array([[np.random.default_rng([seed, 7, v, int(i)]).random() < 0.5 for i in indices] for v in range(views)],
                    dtype=bool).reshape(views, len(indices))


def _check_cache_fits(n_values: int) -> None:
    """Refuse a feature cache larger than 80% of this machine's memory, with the ways out."""
    needed = 4 * n_values
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if physical > 0 and needed > 0.8 * physical:
        raise ConfigError(
            f"the feature cache would need {needed / 2**30:.1f} GiB of memory, more than 80% of this machine's "
            f"{physical / 2**30:.1f} GiB; use fewer --feature-views, a --limit, a smaller --image-size, or --no-feature-cache"
        )


@torch.no_grad()
def _compute_features(
    model: ERSMModel, dataset: Dataset, indices: list[int], device: torch.device, batch_size: int, workers: int,
    flips: np.ndarray | None, progress: TrainProgress,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of ``indices`` once per view, on the CPU: ([V, N, C, H, W] float32, labels [N]).

    The backbone runs in eval mode (frozen: BatchNorm statistics fixed), as in training.
    ``flips[v, j]`` flips image j for view v (a flip of the normalized image equals a
    flip of the pixels); None means one unflipped view.
    """
    views = 1 if flips is None else flips.shape[0]
    was_training = model.training
    model.eval()
    h, w = model.feature_hw
    _check_cache_fits(views * len(indices) * model.channels * h * w)
    features = torch.empty(views, len(indices), model.channels, h, w, dtype=torch.float32)
    labels = torch.empty(len(indices), dtype=torch.long)
    loader = _loader(Subset(dataset, indices), batch_size, workers, device, shuffle=False, seed=0)
    start = 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        n = len(images)
        labels[start:start + n] = batch["label"]
        for v in range(views):
            x = images
            if flips is not None and flips[v, start:start + n].any():
                flip = torch.as_tensor(flips[v, start:start + n], device=device)
                x = torch.where(flip[:, None, None, None], images.flip(-1), images)
            features[v, start:start + n] = model.forward_features(x).float().cpu()
        start += n
        progress.features_step(n * views)
    model.train(was_training)
    return features, labels


# -- evaluation -------------------------------------------------------------------------


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
    head = _FromFeatures(model)
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


def _none_for_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class _Selection:
    """Which dataset indices train, validate and test."""

    train: list[int]
    val: list[int]
    test: list[int]
    pool: list[int]  # training-split images after limit_train (train + val)
    train_total: int  # size of the training split
    test_total: int  # size of the test split


def _select(train_data: Dataset, test_data: Dataset, config: TrainConfig) -> _Selection:
    """limit subsets of both splits, then the validation share of the training subset (all seeded by subset_seed)."""
    labels = dataset_labels(train_data)
    pool = stratified_subset(labels, config.limit_train, config.subset_seed)
    fit, held = stratified_split(labels[pool], config.val_fraction, config.subset_seed)
    test = stratified_subset(dataset_labels(test_data), config.limit_test, config.subset_seed)
    return _Selection([pool[i] for i in fit], [pool[i] for i in held], test, pool, len(train_data), len(test_data))


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    weights: str | Path | None = None,
    progress: TrainProgress | None = None,
    history_file: str | Path | None = None,
) -> TrainResult:
    """Train a model variant, validate after every epoch and score the test split once at the end.

    Args:
        model_config: the model to build. Its ``num_classes`` is replaced by the
            training split's class count when they differ (the head is sized for
            the dataset), so callers need not know it in advance.
        train_config: dataset, selection, schedule, seed, device and feature cache.
        weights: optional local backbone state dict loaded before training.
        progress: hooks called during the run (progress display).
        history_file: when given, the history CSV is rewritten there (atomically)
            after every epoch, so an interrupted run keeps the epochs it finished.

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
    cached = model_config.freeze_backbone if train_config.feature_cache is None else train_config.feature_cache
    if cached and not model_config.freeze_backbone:
        raise ConfigError(
            "--feature-cache needs --freeze-backbone: a backbone that trains changes its features every step"
        )
    if train_config.feature_views and not cached:
        raise ConfigError("--feature-views applies to cached training (a frozen backbone with the feature cache on)")
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, weights=str(weights) if weights else None)

    options = train_config.dataset_options()
    plain = model_transform(model, train=False)
    augmented = model_transform(model, train=train_config.augment and not cached)

    def _build(split, transform):
        return build_dataset(train_config.dataset, split, transform, root=train_config.data_root, **options)

    train_data, test_data = _build("train", augmented), _build("test", plain)
    eval_train_data = _build("train", plain) if augmented != plain else train_data  # validation images: no flips
    class_names = list(train_data.classes)
    if list(test_data.classes) != class_names:
        test_names = list(test_data.classes)
        where = first_class_difference(class_names, test_names, "the train split", "the test split")
        raise ERSMError(
            f"dataset {train_config.dataset!r}: the train and test splits have different classes "
            f"({len(class_names)} vs {len(test_names)}; {where}); check the folder layout and the split files"
        )
    model = _sized_for(model, len(class_names)).to(device)
    chosen = _select(train_data, test_data, train_config)
    if not chosen.train:
        raise ConfigError(
            f"no training images left after holding out --val-fraction {train_config.val_fraction} of {len(chosen.pool)}"
        )
    bs, workers, seed = train_config.batch_size, train_config.workers, train_config.seed

    cache_info: dict[str, Any] = {"used": bool(cached)}
    if cached:
        cache_started = time.time()
        views = train_config.feature_views
        flips = _view_flips(chosen.train, views, seed) if views else None
        sets = {}
        for split, data, indices, split_flips in (("train", eval_train_data, chosen.train, flips),
                                                  ("val", eval_train_data, chosen.val, None)):
            if not indices:
                continue
            progress.features_start(split, len(indices) * (views or 1))
            sets[split] = _compute_features(model, data, indices, device, bs, workers, split_flips, progress)
        train_set: Dataset = _FeatureSet(*sets["train"], seed=seed)
        val_set: Dataset | None = _FeatureSet(*sets["val"], seed=seed) if "val" in sets else None
        loader_workers = 0  # features are in memory
        cache_info.update({
            "views": views or 1,
            "augmentation": f"{views} seeded views per image (each flipped with probability 0.5)" if views else "none (unaugmented features)",
            "storage": "memory",
            "bytes": int(sum(f.numel() * f.element_size() for f, _ in sets.values())),
            "seconds": round(time.time() - cache_started, 3),
        })
        net: nn.Module = _FromFeatures(model)
    else:
        train_set = Subset(train_data, chosen.train)
        val_set = Subset(eval_train_data, chosen.val) if chosen.val else None
        loader_workers = workers
        net = model
    collate = _FeatureSet.collate if cached else None
    train_loader = _loader(train_set, bs, loader_workers, device, shuffle=True, seed=seed, world=world, rank=rank,
                           collate_fn=collate)
    val_loader = (_loader(val_set, bs, loader_workers, device, shuffle=False, seed=seed, collate_fn=collate)
                  if val_set is not None else None)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    total_steps = max(1, train_config.epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    input_key = "features" if cached else "image"
    progress.start(train_config.epochs, len(train_loader), len(val_loader) if val_loader is not None else 0)
    rows: list[dict[str, float]] = []
    write_rows = history_file is not None and rank == 0
    step = 0
    for epoch in range(1, train_config.epochs + 1):
        epoch_started = time.time()
        progress.epoch_start(epoch)
        epoch_lr = optimizer.param_groups[0]["lr"]
        model.train()
        if world > 1:
            train_loader.sampler.set_epoch(epoch)
        if isinstance(train_set, _FeatureSet):
            train_set.set_epoch(epoch)
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0.0}
        seen = 0
        for batch in train_loader:
            inputs = batch[input_key].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            logits, aux = net(inputs, return_aux=True)
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
        val = evaluate(model, val_loader, device, progress.val_step) if val_loader is not None else {}
        row = {
            "epoch": epoch,
            "train_loss": sums["loss"] / max(seen, 1),
            "train_ce": sums["ce"] / max(seen, 1),
            "train_reg": sums["reg"] / max(seen, 1),
            "train_acc": sums["correct"] / max(seen, 1),
            "val_acc": val.get("accuracy", float("nan")),
            "val_keep": val.get("mean_keep", float("nan")),
            "test_acc": float("nan"),
            "test_keep": float("nan"),
            "lr": epoch_lr,
            "seconds": time.time() - epoch_started,
        }
        rows.append(row)
        if write_rows:
            write_history(history_file, pd.DataFrame(rows, columns=HISTORY_COLUMNS))
        progress.epoch_end(row)

    # the test split, once, on the final model
    test_loader = _loader(Subset(test_data, chosen.test), bs, workers, device, shuffle=False, seed=seed)
    progress.test_start(len(test_loader))
    test = evaluate(model, test_loader, device, progress.test_step)
    rows[-1]["test_acc"], rows[-1]["test_keep"] = test["accuracy"], test["mean_keep"]
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    if write_rows:
        write_history(history_file, history)

    model.eval().cpu()
    last = rows[-1]
    metrics = {
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "val_acc": _none_for_nan(last["val_acc"]),
        "test_acc": last["test_acc"],
        "mean_keep": _none_for_nan(last["test_keep"]),
    }
    progress.test_end(metrics)
    provenance = {
        "dataset": train_config.dataset,
        "dataset_options": options,
        "data_root": train_config.data_root,
        "train_size": len(chosen.train),
        "val_size": len(chosen.val),
        "test_size": len(chosen.test),
        "selection": {
            "subset_seed": train_config.subset_seed,
            "val_fraction": train_config.val_fraction,
            "train_split": subset_record(chosen.pool, train_config.limit_train, train_config.subset_seed, chosen.train_total),
            "val_indices": chosen.val,
            "train_indices_sha256": indices_sha256(chosen.train),
            "test": subset_record(chosen.test, train_config.limit_test, train_config.subset_seed, chosen.test_total),
        },
        "transform": {"train": train_data.transform.describe(), "eval": test_data.transform.describe()},
        "feature_cache": cache_info,
        "epochs": train_config.epochs,
        "seed": train_config.seed,
        **{f"final_{k}": v for k, v in metrics.items()},
        "train_config": train_config.to_dict(),
        "weights": str(weights) if weights else None,
        "weights_sha256": file_sha256(weights) if weights else None,
        "device": str(device),
        "world_size": world,
        "history": [{k: _none_for_nan(v) for k, v in r.items()} for r in rows],
        "wall_seconds": round(time.time() - started, 3),
    }
    return TrainResult(model=model, class_names=class_names, history=history, metrics=metrics, provenance=provenance)
