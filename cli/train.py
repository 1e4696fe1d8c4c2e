"""``ersm-eval train``: train a model variant and write its checkpoint and per-epoch history."""

from __future__ import annotations

import math
import os
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.app import app
from cli.common import BatchSize, DataRoot, DatasetName, Device, Quiet, Workers, console, err_console, handle_errors
from ersm_core.model import ModelConfig
from ersm_core.training import TrainConfig, TrainProgress, check_output_file, train

__all__ = ["train_command", "Variant", "PairwiseReduce", "BiasKind"]

_MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


class Variant(str, Enum):
    baseline = "baseline"
    dropblock = "dropblock"
    spatial_dropout = "spatial_dropout"
    l0 = "l0"
    ersm_unary = "ersm_unary"
    ersm_full = "ersm_full"


class PairwiseReduce(str, Enum):
    sum = "sum"
    mean = "mean"


class BiasKind(str, Enum):
    scalar = "scalar"
    per_token = "per_token"


class _RichProgress(TrainProgress):
    """One rich bar per epoch (train, then test batches): running loss and train accuracy, then
    the epoch's test accuracy and mean keep probability."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task = None
        self.epochs = self.per_epoch = 0

    def start(self, epochs: int, train_batches: int, test_batches: int) -> None:
        self.epochs, self.per_epoch = epochs, train_batches + test_batches

    def epoch_start(self, epoch: int) -> None:
        self.task = self.bar.add_task(
            f"epoch {epoch}/{self.epochs}", total=self.per_epoch, loss="-", acc="-", test="-", keep="-"
        )

    def train_step(self, n_images: int, running: dict[str, float]) -> None:
        self.bar.update(self.task, advance=1, loss=f"{running['loss']:.3f}", acc=f"{running['acc']:.1%}")

    def test_step(self, n_images: int) -> None:
        self.bar.advance(self.task, 1)

    def epoch_end(self, row: dict[str, float]) -> None:
        keep = "-" if math.isnan(row["mean_keep"]) else f"{row['mean_keep']:.3f}"
        self.bar.update(self.task, test=f"{row['test_acc']:.1%}", keep=keep)


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} acc {task.fields[acc]} test {task.fields[test]} keep {task.fields[keep]}"),
        TimeElapsedColumn(),
        console=err_console,
    )


@app.command("train")
@handle_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint file to write (a history CSV <stem>.history.csv goes beside it).", show_default=False)],
    dataset: DatasetName = "synthetic",
    data_root: DataRoot = None,
    backbone: Annotated[str, typer.Option("--backbone", help="compact_cnn or a timm CNN name (resnet50, convnext_tiny, efficientnetv2_s, ...).")] = "compact_cnn",
    variant: Annotated[Variant, typer.Option("--variant", help="Spatial module between backbone and pooling.")] = Variant.ersm_full,
    image_size: Annotated[int, typer.Option("--image-size", help="Square input side in pixels.")] = _MODEL_DEFAULTS["image_size"],
    patch_size: Annotated[int, typer.Option("--patch-size", help="Token size P on the feature map (must divide it).")] = _MODEL_DEFAULTS["patch_size"],
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of the unary energy.")] = _MODEL_DEFAULTS["alpha"],
    beta: Annotated[float, typer.Option("--beta", help="Weight of the pairwise energy (ignored by ersm_unary).")] = _MODEL_DEFAULTS["beta"],
    tau: Annotated[float, typer.Option("--tau", help="Gate temperature.")] = _MODEL_DEFAULTS["tau"],
    init_keep: Annotated[float, typer.Option("--init-keep", help="Initial keep probability of the gate (ERSM, L0).")] = _MODEL_DEFAULTS["init_keep"],
    pairwise_reduce: Annotated[PairwiseReduce, typer.Option("--pairwise-reduce", help="Sum (authors' code) or mean over the Moore neighbours.")] = PairwiseReduce.sum,
    bias: Annotated[BiasKind, typer.Option("--bias", help="One gate bias b, or one per token.")] = BiasKind.scalar,
    drop_prob: Annotated[float, typer.Option("--drop-prob", help="DropBlock / spatial-dropout rate.")] = _MODEL_DEFAULTS["drop_prob"],
    block_size: Annotated[int, typer.Option("--block-size", help="DropBlock block size on the feature map.")] = _MODEL_DEFAULTS["block_size"],
    l0_lambda: Annotated[float, typer.Option("--l0-lambda", help="Weight of the expected-L0 penalty (variant l0).")] = _MODEL_DEFAULTS["l0_lambda"],
    lr: Annotated[float, typer.Option("--lr", help="AdamW peak learning rate (cosine schedule over all steps).")] = _TRAIN_DEFAULTS["lr"],
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.")] = _TRAIN_DEFAULTS["weight_decay"],
    batch_size: BatchSize = _TRAIN_DEFAULTS["batch_size"],
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training split.")] = _TRAIN_DEFAULTS["epochs"],
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialization, shuffling and flips.")] = _TRAIN_DEFAULTS["seed"],
    workers: Workers = _TRAIN_DEFAULTS["workers"],
    device: Device = "auto",
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Start from timm's pretrained weights (timm backbones only).")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local backbone state dict (.pt/.pth/.safetensors) to start from.")] = None,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Keep the backbone fixed (eval mode, no gradients): the paper's protocol for pretrained backbones.")] = False,
    spurious: Annotated[Optional[float], typer.Option("--spurious", help="synthetic: probability that a training image's background matches its label.")] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="synthetic: number of training images (default 2000).")] = None,
    n_test: Annotated[Optional[int], typer.Option("--n-test", help="synthetic: number of test images (default 500).")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", help="synthetic: number of classes, 2 to 12 (default 10).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use a seeded random subset of N images of each split (quick runs).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing checkpoint file.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a model variant (AdamW, cosine schedule, cross-entropy + regularizer) and write a checkpoint."""
    check_output_file(out, overwrite)
    model_config = ModelConfig(
        num_classes=num_classes or 2,  # train() sizes the head for the dataset's classes
        backbone=backbone,
        variant=variant.value,
        image_size=image_size,
        patch_size=patch_size,
        alpha=alpha,
        beta=beta,
        tau=tau,
        init_keep=init_keep,
        pairwise_reduce=pairwise_reduce.value,
        bias=bias.value,
        drop_prob=drop_prob,
        block_size=block_size,
        l0_lambda=l0_lambda,
        pretrained=pretrained,
        freeze_backbone=freeze_backbone,
    )
    train_config = TrainConfig(
        dataset=dataset,
        data_root=str(data_root) if data_root else None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        workers=workers,
        device=device,
        num_classes=num_classes,
        n_train=n_train,
        n_test=n_test,
        spurious=spurious,
        limit_train=limit,
        limit_test=limit,
    )
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 shows progress and writes
    if quiet or not main_process:
        result = train(model_config, train_config, weights=weights)
    else:
        with _bar() as bar:
            result = train(model_config, train_config, weights=weights, progress=_RichProgress(bar))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if not main_process:
        return
    ckpt, history = result.save(out)
    keep = result.metrics["mean_keep"]
    console.print(
        f"test accuracy {result.metrics['test_acc']:.1%}  train accuracy {result.metrics['train_acc']:.1%}  "
        f"mean keep {'-' if keep is None else f'{keep:.3f}'}  ({result.provenance['wall_seconds']:.0f} s)",
        highlight=False,
    )
    console.print(f"checkpoint: {ckpt}", highlight=False, soft_wrap=True)
    console.print(f"history:    {history}", highlight=False, soft_wrap=True)
