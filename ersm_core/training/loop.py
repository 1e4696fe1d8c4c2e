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

With a frozen backbone its features are computed once (:mod:`ersm_core.training.features`).
After every epoch the history CSV and the resume state (:mod:`ersm_core.training.state`)
are rewritten, so a killed run can be continued with the same result.

A run is deterministic on the CPU given its seed: the seed fixes the
initialization, the shuffling and the random flips.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ersm_core.checkpoint import save_checkpoint
from ersm_core.config import ModelConfig, TrainConfig
from ersm_core.data import build_dataset, model_transform
from ersm_core.data.base import first_class_difference
from ersm_core.data.subset import dataset_labels, indices_sha256, stratified_split, stratified_subset, subset_record
from ersm_core.device import select_device
from ersm_core.errors import ConfigError, ERSMError
from ersm_core.files import file_sha256
from ersm_core.model import ERSMModel, build_model, seed_free_backbone
from ersm_core.training.cached import cached_sets, shared_test_set
from ersm_core.training.evaluate import evaluate
from ersm_core.training.features import FeatureSet, FromFeatures
from ersm_core.training.history import HISTORY_COLUMNS, history_path, write_history
from ersm_core.training.loader import make_loader
from ersm_core.training.progress import TrainProgress
from ersm_core.training.shared import SharedFeatures
from ersm_core.training.state import check_resumable, load_state, restore_rng, save_state

__all__ = ["TrainResult", "train"]


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
        """Write the checkpoint (.pt or .safetensors) and ``<stem>.history.csv`` beside it, each atomically."""
        path = Path(path)
        ckpt = save_checkpoint(path, self.model, self.class_names, self.provenance)
        return ckpt, write_history(history_path(path), self.history)


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


@dataclass
class _Data:
    train: Dataset  # training split with the training transform
    test: Dataset  # test split, eval transform
    eval_train: Dataset  # training split, eval transform (validation images, cached features)
    class_names: list[str]


def _datasets(model: ERSMModel, config: TrainConfig, cached: bool) -> _Data:
    options = config.dataset_options()
    plain = model_transform(model, train=False)
    augmented = model_transform(model, train=config.augment and not cached)

    def _build(split, transform):
        return build_dataset(config.dataset, split, transform, root=config.data_root, **options)

    train_data, test_data = _build("train", augmented), _build("test", plain)
    eval_train_data = _build("train", plain) if augmented != plain else train_data  # validation images: no flips
    class_names = list(train_data.classes)
    if list(test_data.classes) != class_names:
        test_names = list(test_data.classes)
        where = first_class_difference(class_names, test_names, "the train split", "the test split")
        raise ERSMError(
            f"dataset {config.dataset!r}: the train and test splits have different classes "
            f"({len(class_names)} vs {len(test_names)}; {where}); check the folder layout and the split files"
        )
    return _Data(train_data, test_data, eval_train_data, class_names)


def _train_epoch(net: nn.Module, loader: DataLoader, input_key: str, device: torch.device, optimizer, scheduler,
                 epoch: int, step: int, progress: TrainProgress) -> tuple[dict[str, float], int, int]:
    """One pass over the training loader: (sums of loss, ce, reg and correct, images seen, steps so far)."""
    sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0.0}
    seen = 0
    for batch in loader:
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
    return sums, seen, step


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    weights: str | Path | None = None,
    progress: TrainProgress | None = None,
    history_file: str | Path | None = None,
    state_file: str | Path | None = None,
    resume: bool = False,
    shared: SharedFeatures | None = None,
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
        state_file: when given, the resume state is rewritten there (atomically)
            after every epoch (:mod:`ersm_core.training.state`); the caller removes it
            once the checkpoint is saved.
        resume: continue from ``state_file`` (same options required) instead of epoch 1.
        shared: with a frozen backbone and the feature cache, reuse the features an earlier
            run of this process kept there under the same key, and keep this run's for the
            next (:mod:`ersm_core.training.shared`); the result is the same as without it.

    Returns:
        The trained model (eval mode, CPU), class names, per-epoch history, final
        metrics and the provenance to store in its checkpoint.

    Raises:
        ERSMError: a bad option or dataset, a state that cannot be resumed, or a loss
            that stops being finite.

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
    if train_config.feature_cache_dir is not None and not cached:
        raise ConfigError("--feature-cache-dir applies to cached training (a frozen backbone with the feature cache on)")
    if train_config.feature_views and not cached:
        raise ConfigError("--feature-views applies to cached training (a frozen backbone with the feature cache on)")
    if resume and state_file is None:
        raise ConfigError("resume needs the state file of the run to continue")
    saved = load_state(state_file) if resume else None
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, weights=str(weights) if weights else None)
    if model_config.freeze_backbone and not weights and not model_config.pretrained:
        seed_free_backbone(model, model_config)  # a frozen random backbone is the experiment's, not the seed's
    data = _datasets(model, train_config, cached)
    model = _sized_for(model, len(data.class_names)).to(device)
    if saved is not None:
        check_resumable(Path(state_file), saved, model.config.to_dict(), train_config.to_dict(), world)
    chosen = _select(data.train, data.test, train_config)
    if not chosen.train:
        raise ConfigError(
            f"no training images left after holding out --val-fraction {train_config.val_fraction} of {len(chosen.pool)}"
        )
    bs, workers, seed = train_config.batch_size, train_config.workers, train_config.seed

    plan = test_set = None
    try:
        if cached:
            train_set, val_set, cache_info, plan = cached_sets(model, data.eval_train, chosen.train, chosen.val,
                                                               train_config, device, progress, shared)
            loader_workers, net = 0, FromFeatures(model)  # features are at hand
            if shared is not None:
                test_set = shared_test_set(model, data.test, chosen.test, train_config, device, progress, shared)
        else:
            train_set = Subset(data.train, chosen.train)
            val_set = Subset(data.eval_train, chosen.val) if chosen.val else None
            cache_info, loader_workers, net = {"used": False}, workers, model
        result = _fit(model, net, data, chosen, train_config, device, world, rank, train_set, val_set, loader_workers,
                      progress, history_file, state_file, saved, test_set)
    finally:
        if plan is not None:
            plan.close()
    rows, test = result
    return _result(model, data, chosen, train_config, weights, device, world, rows, test, cache_info, progress, started)


def _fit(model, net, data, chosen, train_config, device, world, rank, train_set, val_set, loader_workers, progress,
         history_file, state_file, saved, test_set=None):
    """The epochs (from the saved state's next one when resuming), then the one test pass: (rows, test metrics).

    ``test_set``: the test images' cached features (a grid's shared ones), else the images are scored.
    """
    bs, seed = train_config.batch_size, train_config.seed
    collate = FeatureSet.collate if isinstance(train_set, FeatureSet) else None
    train_loader = make_loader(train_set, bs, loader_workers, device, shuffle=True, seed=seed, world=world, rank=rank,
                               collate_fn=collate)
    val_loader = (make_loader(val_set, bs, loader_workers, device, shuffle=False, seed=seed, collate_fn=collate)
                  if val_set is not None else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    total_steps = max(1, train_config.epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    rows: list[dict[str, float]] = []
    step, first = 0, 1
    if saved is not None:  # continue where the saved run stopped: weights, optimizer, schedule, random states, order
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        train_loader.generator.set_state(saved["loader_generator"])
        rows, step, first = [dict(r) for r in saved["rows"]], int(saved["step"]), int(saved["epoch"]) + 1
        restore_rng(saved["rng"])
        progress.message(f"resuming after epoch {saved['epoch']} of {train_config.epochs} from {state_file}")
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    input_key = "features" if isinstance(train_set, FeatureSet) else "image"
    progress.start(train_config.epochs, len(train_loader), len(val_loader) if val_loader is not None else 0)
    main = rank == 0
    for epoch in range(first, train_config.epochs + 1):
        epoch_started = time.time()
        progress.epoch_start(epoch)
        epoch_lr = optimizer.param_groups[0]["lr"]
        model.train()
        if world > 1:
            train_loader.sampler.set_epoch(epoch)
        if isinstance(train_set, FeatureSet):
            train_set.set_epoch(epoch)
        sums, seen, step = _train_epoch(net, train_loader, input_key, device, optimizer, scheduler, epoch, step, progress)
        if world > 1:  # every process's share of the epoch, summed
            totals = torch.tensor([sums["loss"], sums["ce"], sums["reg"], sums["correct"], float(seen)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            sums = dict(zip(("loss", "ce", "reg", "correct"), totals[:4].tolist()))
            seen = int(totals[4].item())
        if seen and not all(math.isfinite(p.detach().abs().sum().item()) for p in params):
            raise _diverged(epoch, step, float("nan"), float("nan"), float("nan"), epoch_lr)
        val = evaluate(model, val_loader, device, progress.val_step) if val_loader is not None else {}
        rows.append({
            "epoch": epoch, **{f"train_{k}": sums[k] / max(seen, 1) for k in ("loss", "ce", "reg")},
            "train_acc": sums["correct"] / max(seen, 1),
            "val_acc": val.get("accuracy", float("nan")), "val_keep": val.get("mean_keep", float("nan")),
            "test_acc": float("nan"), "test_keep": float("nan"), "lr": epoch_lr, "seconds": time.time() - epoch_started,
        })
        if main and history_file is not None:
            write_history(history_file, pd.DataFrame(rows, columns=HISTORY_COLUMNS))
        if main and state_file is not None:
            save_state(state_file, epoch=epoch, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                       loader_generator=train_loader.generator, rows=rows, model_config=model.config.to_dict(),
                       train_config=train_config.to_dict(), world_size=world)
        progress.epoch_end(rows[-1])

    # the test split, once, on the final model
    if test_set is not None:
        test_loader = make_loader(test_set, bs, 0, device, shuffle=False, seed=seed, collate_fn=FeatureSet.collate)
    else:
        test_loader = make_loader(Subset(data.test, chosen.test), bs, train_config.workers, device, shuffle=False, seed=seed)
    progress.test_start(len(test_loader))
    test = evaluate(model, test_loader, device, progress.test_step)
    rows[-1]["test_acc"], rows[-1]["test_keep"] = test["accuracy"], test["mean_keep"]
    if main and history_file is not None:
        write_history(history_file, pd.DataFrame(rows, columns=HISTORY_COLUMNS))
    return rows, test


def _result(model, data, chosen, train_config, weights, device, world, rows, test, cache_info, progress, started):
    """The TrainResult with its metrics and provenance."""
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
        "dataset_options": train_config.dataset_options(),
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
        "transform": {"train": data.train.transform.describe(), "eval": data.test.transform.describe()},
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
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return TrainResult(model=model, class_names=data.class_names, history=history, metrics=metrics, provenance=provenance)
