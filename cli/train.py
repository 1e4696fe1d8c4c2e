"""``ersm-eval train``: train a model variant and write its checkpoint and per-epoch history.

Heavy packages (torch, timm) are imported inside the command, so ``--help`` stays fast;
the option defaults and bounds are read from :mod:`ersm_core.config` (torch-free).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.app import app
from ersm_core.config import MAX_VALUES, MIN_IMAGE_SIZE, ModelConfig, TrainConfig
from ersm_core.errors import ConfigError
from cli.common import (BatchSize, DataRoot, DatasetName, Device, Quiet, SubsetSeed, Terminated, Workers, console,
                        err_console, handle_errors)

if TYPE_CHECKING:  # pragma: no cover
    from cli.progress import ProgressDisplay

__all__ = ["train_command", "Variant", "PairwiseReduce", "BiasKind", "Interpolation", "MODEL_DEFAULTS", "TRAIN_DEFAULTS"]

# the defaults of the options, read from the library's configs (ersm_core.config imports no torch)
MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelConfig) if f.name != "num_classes"}
TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


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


class Interpolation(str, Enum):  # ersm_core.data.INTERPOLATIONS
    bilinear = "bilinear"
    bicubic = "bicubic"
    lanczos = "lanczos"
    nearest = "nearest"


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _keep(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _run_eta(started: float | None, done: int, total: int) -> str:
    """'run ETA 1m 05s' from the units done since ``started`` (time.monotonic()) and the run's total."""
    from cli.progress import format_duration

    if started is None or not done:
        return "run ETA -"
    rate = done / max(time.monotonic() - started, 1e-9)
    return f"run ETA {format_duration((total - done) / rate)}"


def _train_display(display: "ProgressDisplay"):
    """A TrainProgress drawing on ``display``: one task per epoch with the run's ETA, one for the
    one-off feature cache and one for the final test."""
    from ersm_core.training import TrainProgress

    class TrainDisplay(TrainProgress):
        def __init__(self) -> None:
            self.task = None
            self.epochs = self.per_epoch = self.units_done = 0
            self.run_started: float | None = None
            self.features_left = 0
            self.info = ""

        def _run_eta(self) -> str:
            return _run_eta(self.run_started, self.units_done, self.epochs * self.per_epoch)

        def message(self, text: str) -> None:
            display.message(text)

        def start(self, epochs: int, train_batches: int, val_batches: int) -> None:
            self.epochs, self.per_epoch = epochs, train_batches + val_batches

        def features_start(self, split: str, n_images: int) -> None:
            self.task = display.add_task(f"backbone features, {split} (once)", total=n_images, unit="images")
            self.features_left = n_images

        def features_step(self, n_images: int) -> None:
            display.advance(self.task, n_images)
            self.features_left -= n_images
            if self.features_left <= 0:
                display.finish(self.task)

        def epoch_start(self, epoch: int) -> None:
            if self.run_started is None:
                self.run_started = time.monotonic()
            self.task = display.add_task(f"epoch {epoch}/{self.epochs}", total=self.per_epoch, unit="batches")

        def train_step(self, n_images: int, running: dict[str, float]) -> None:
            self.units_done += 1
            self.info = f"loss {running['loss']:.3f} acc {running['acc']:.1%}"
            display.advance(self.task, 1, info=f"{self.info} | {self._run_eta()}")

        def val_step(self, n_images: int) -> None:
            self.units_done += 1
            display.advance(self.task, 1, info=f"{self.info} | validating | {self._run_eta()}")

        def epoch_end(self, row: dict[str, float]) -> None:
            display.finish(self.task, info=f"loss {row['train_loss']:.3f} acc {row['train_acc']:.1%} "
                                           f"val {_pct(row['val_acc'])} mean keep {_keep(row['val_keep'])} | {self._run_eta()}")

        def test_start(self, test_batches: int) -> None:
            self.task = display.add_task("test split (once, final model)", total=test_batches, unit="batches")

        def test_step(self, n_images: int) -> None:
            display.advance(self.task, 1)

        def test_end(self, metrics: dict[str, Any]) -> None:
            display.finish(self.task, info=f"test {_pct(metrics['test_acc'])} mean keep {_keep(metrics['mean_keep'])}")

    return TrainDisplay()


@app.command("train")
@handle_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint file to write: NAME.pt (torch) or NAME.safetensors (tensors, with config and provenance as JSON metadata). Beside it: NAME.history.csv and, while the run lasts, NAME.state.pt for --resume; both rewritten after every epoch.", show_default=False)],
    dataset: DatasetName = "synthetic",
    data_root: DataRoot = None,
    backbone: Annotated[str, typer.Option("--backbone", help="compact_cnn or a timm CNN name (resnet50, convnext_tiny, efficientnetv2_s, ...).")] = "compact_cnn",
    variant: Annotated[Variant, typer.Option("--variant", help="Spatial module between backbone and pooling.")] = Variant.ersm_full,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Square input side in pixels. Default: the backbone's (timm: its pretrained config; compact_cnn: 128).", show_default=False)] = None,
    crop_pct: Annotated[Optional[str], typer.Option("--crop-pct", help="Share of the resized image kept by the centre crop, in (0, 1]; 'authors' = 1/1.14 (resize to 1.14·S, crop S), 'none' = 1. Default: the backbone's (compact_cnn: 1).", show_default=False)] = None,
    interpolation: Annotated[Optional[Interpolation], typer.Option("--interpolation", help="Image resize filter (masks always nearest). Default: the backbone's (timm: its pretrained config; compact_cnn: bilinear).", show_default=False)] = None,
    patch_size: Annotated[int, typer.Option("--patch-size", help="Token size P on the feature map (must divide it).")] = MODEL_DEFAULTS["patch_size"],
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of the unary energy.")] = MODEL_DEFAULTS["alpha"],
    beta: Annotated[float, typer.Option("--beta", help="Weight of the pairwise energy (ignored by ersm_unary).")] = MODEL_DEFAULTS["beta"],
    tau: Annotated[float, typer.Option("--tau", help="Gate temperature.")] = MODEL_DEFAULTS["tau"],
    init_keep: Annotated[float, typer.Option("--init-keep", help="Initial keep probability of the gate (ERSM, L0).")] = MODEL_DEFAULTS["init_keep"],
    pairwise_reduce: Annotated[PairwiseReduce, typer.Option("--pairwise-reduce", help="Sum (authors' code) or mean over the Moore neighbours.")] = PairwiseReduce.sum,
    bias: Annotated[BiasKind, typer.Option("--bias", help="One gate bias b, or one per token.")] = BiasKind.scalar,
    drop_prob: Annotated[float, typer.Option("--drop-prob", help="DropBlock / spatial-dropout rate.")] = MODEL_DEFAULTS["drop_prob"],
    block_size: Annotated[int, typer.Option("--block-size", help="DropBlock block size on the feature map.")] = MODEL_DEFAULTS["block_size"],
    l0_lambda: Annotated[float, typer.Option("--l0-lambda", help="Weight of the expected-L0 penalty (variant l0).")] = MODEL_DEFAULTS["l0_lambda"],
    lr: Annotated[float, typer.Option("--lr", help="AdamW peak learning rate (cosine schedule over all steps).")] = TRAIN_DEFAULTS["lr"],
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.")] = TRAIN_DEFAULTS["weight_decay"],
    batch_size: BatchSize = TRAIN_DEFAULTS["batch_size"],
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training images.")] = TRAIN_DEFAULTS["epochs"],
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialization, shuffling and flips.")] = TRAIN_DEFAULTS["seed"],
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Train one model per seed, e.g. 0,1,2 (with --variants: every variant × seed) in one process; a frozen backbone's features are computed once for all. --out is then a folder of <variant>-s<seed>.pt.", show_default=False)] = None,
    variants: Annotated[Optional[str], typer.Option("--variants", help="Train one model per variant, e.g. baseline,ersm_full (see --seeds); --out is then a folder.", show_default=False)] = None,
    workers: Workers = TRAIN_DEFAULTS["workers"],
    device: Device = "auto",
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Start from timm's pretrained weights (timm backbones only).")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local backbone state dict (.pt/.pth/.safetensors) to start from.")] = None,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Keep the backbone fixed (eval mode, no gradients): the paper's protocol for pretrained backbones.")] = False,
    feature_cache: Annotated[Optional[bool], typer.Option("--feature-cache/--no-feature-cache", help="Frozen backbone: compute its features once per image, in memory, and train the spatial module and head from them. Default: on with --freeze-backbone.", show_default=False)] = None,
    feature_views: Annotated[int, typer.Option("--feature-views", help="Cached training: keep K seeded views per image (each randomly flipped); 0 = the unaugmented image only.")] = TRAIN_DEFAULTS["feature_views"],
    feature_cache_dir: Annotated[Optional[Path], typer.Option("--feature-cache-dir", help="Cached training: keep the features in this folder, memory-mapped (for caches larger than memory), and reuse them in later runs with the same backbone, transform and images.", show_default=False)] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random horizontal flips of training images (uncached training; cached: see --feature-views).")] = True,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the training images held out (seeded, stratified) and scored after every epoch; the test split is scored once, at the end.")] = TRAIN_DEFAULTS["val_fraction"],
    spurious: Annotated[Optional[float], typer.Option("--spurious", help="synthetic: probability that a training image's background matches its label.")] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="synthetic: number of training images (default 2000).")] = None,
    n_test: Annotated[Optional[int], typer.Option("--n-test", help="synthetic: number of test images (default 500).")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", help="synthetic: number of classes, 2 to 12 (default 10).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use N images of each split: a seeded, class-stratified subset, the same images as the evaluators' --limit N with the same --subset-seed.")] = None,
    subset_seed: SubsetSeed = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing checkpoint file and its history CSV.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped run from NAME.state.pt beside --out (give the same options); it ends as the run would have ended unstopped. With --seeds/--variants: finished models are kept, stopped ones continued, the rest trained.")] = False,
    quiet: Quiet = False,
) -> None:
    """Train a model variant (AdamW, cosine schedule, cross-entropy + regularizer) and write a checkpoint."""
    options = dict(locals())
    check_train_ranges(options)
    members = _grid_members(options)
    if members is not None:
        return _train_grid_command(options, members)
    _check_out(out, overwrite, resume, [data_root, weights])
    data, model_config, train_config = _configs(options)
    result = _train(model_config, train_config, data, out, weights, quiet, resume)
    if result is not None:
        _save_and_print(result, data, out)


def _drop_stale_state(out: Path) -> None:
    """With --overwrite a new run starts: an older run's resume state beside --out is removed first."""
    from ersm_core.training import state_path

    state = state_path(out)
    if state.is_file():
        state.unlink()


# lower bounds the CLI adds to ersm_core.config.MAX_VALUES' upper ones (the rest: ModelConfig / TrainConfig messages)
_LOWEST = {"image_size": MIN_IMAGE_SIZE, "n_train": 0, "n_test": 0}


def option_name(field_name: str) -> str:
    """The command-line option of a config field: ``weight_decay`` → ``--weight-decay``."""
    return "--" + field_name.replace("_", "-")


def check_train_ranges(options: dict[str, Any]) -> None:
    """Refuse (ConfigError, one line naming the option) train options outside their sane range.

    The upper bounds are ersm_core.config.MAX_VALUES (the ones ModelConfig / TrainConfig and the
    checkpoint reader apply), checked here before anything is imported or allocated, with the
    option's own name in the message.
    """
    from cli.common import check_int_range

    for name, top in MAX_VALUES.items():
        value = options.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, int) and isinstance(top, int):
            check_int_range(value, option_name(name), _LOWEST.get(name), top)
        elif math.isfinite(value) and value > top:
            raise ConfigError(f"{option_name(name)} must be at most {top:g}, got {value:g}; typical values are far "
                              f"smaller (the default is {MODEL_DEFAULTS.get(name, TRAIN_DEFAULTS.get(name))})")


_MODEL_OPTIONS = ("backbone", "patch_size", "alpha", "beta", "tau", "init_keep", "drop_prob", "block_size", "l0_lambda",
                  "pretrained", "freeze_backbone")
_TRAIN_OPTIONS = ("dataset", "epochs", "batch_size", "lr", "weight_decay", "seed", "workers", "device", "num_classes",
                  "n_train", "n_test", "spurious", "subset_seed", "val_fraction", "augment", "feature_cache",
                  "feature_views", "feature_cache_dir")


def _configs(o: dict[str, Any]):
    """(data config, ModelConfig, TrainConfig) from the command's options."""
    from ersm_core.data.transforms import resolve_data_config
    from ersm_core.model import ModelConfig
    from ersm_core.training import TrainConfig

    interpolation = o["interpolation"].value if o["interpolation"] else None
    data = resolve_data_config(o["backbone"], o["image_size"], o["crop_pct"], interpolation)
    model_config = ModelConfig(
        num_classes=o["num_classes"] or 2,  # train() sizes the head for the dataset's classes
        variant=o["variant"].value, image_size=data.image_size, pairwise_reduce=o["pairwise_reduce"].value,
        bias=o["bias"].value, mean=data.mean, std=data.std, crop_pct=data.crop_pct, interpolation=data.interpolation,
        **{k: o[k] for k in _MODEL_OPTIONS},
    )
    train_config = TrainConfig(data_root=str(o["data_root"]) if o["data_root"] else None, limit_train=o["limit"],
                               limit_test=o["limit"], **{k: o[k] for k in _TRAIN_OPTIONS})
    return data, model_config, train_config


def _train(model_config, train_config, data, out: Path, weights: Path | None, quiet: bool, resume: bool):
    """Train with a progress display; None on processes other than rank 0 (under torchrun)."""
    from cli.progress import ProgressDisplay
    from ersm_core.training import history_path, state_path, train

    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 shows progress and writes
    history, state = history_path(out), state_path(out)
    try:
        with ProgressDisplay(enabled=not quiet and main_process) as display:
            if main_process and not quiet:
                display.message(f"input: {data.image_size} px, crop {data.crop_pct:.4g}, {data.interpolation} ({data.source})")
            result = train(model_config, train_config, weights=weights, progress=_train_display(display),
                           history_file=history if main_process else None,
                           state_file=state if main_process or resume else None, resume=resume)
    except KeyboardInterrupt as stop:
        if main_process:
            kept = (f"the finished epochs are in {history}; continue with the same options and --resume (state: {state})"
                    if state.exists() else "no epoch had finished")
            how = "Stopped (SIGTERM)" if isinstance(stop, Terminated) else "Interrupted"
            err_console.print(f"[bold red]{how}:[/] no checkpoint was written; {kept}.", highlight=False, soft_wrap=True)
        raise typer.Exit(code=143 if isinstance(stop, Terminated) else 130) from None
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result if main_process else None


def _save_and_print(result, data, out: Path) -> None:
    result.provenance["data_config"] = data.to_dict()
    from ersm_core.training import state_path

    ckpt, history = result.save(out)
    state_path(out).unlink(missing_ok=True)  # the run is complete: nothing left to resume
    metrics = result.metrics
    console.print(
        f"test accuracy {_pct(metrics['test_acc'])}  validation accuracy {_pct(metrics['val_acc'])}  "
        f"train accuracy {_pct(metrics['train_acc'])}  mean keep {_keep(metrics['mean_keep'])}  "
        f"({result.provenance['wall_seconds']:.0f} s)",
        highlight=False, soft_wrap=True,
    )
    console.print(f"checkpoint: {ckpt}", highlight=False, soft_wrap=True)
    console.print(f"history:    {history}", highlight=False, soft_wrap=True)


# -- a grid of variants × seeds (--seeds / --variants) ---------------------------------------------------------------
def _grid_members(o: dict[str, Any]):
    """The grid's members when --seeds or --variants is given, else None (one model, --out a file)."""
    from ersm_core.training import grid_members
    from cli.common import parse_int_list

    if o["seeds"] is None and o["variants"] is None:
        return None
    if o["seeds"] is not None and o["seed"] != TRAIN_DEFAULTS["seed"]:
        raise ConfigError("give --seed (one model) or --seeds (one model per seed), not both")
    if o["variants"] is not None and o["variant"] != Variant.ersm_full:
        raise ConfigError("give --variant (one model) or --variants (one model per variant), not both")
    seeds = parse_int_list(o["seeds"], "--seeds") if o["seeds"] is not None else [o["seed"]]
    names = [v.strip() for v in o["variants"].split(",") if v.strip()] if o["variants"] is not None else [o["variant"].value]
    return grid_members(names, seeds)


def _check_out(out: Path, overwrite: bool, resume: bool, inputs: list[Any]) -> None:
    """Before any work: where the checkpoint may go, and its history and resume state beside it."""
    from ersm_core.training import check_run_files
    from ersm_eval.output import check_output_file  # replaces only checkpoints, never an input

    check_output_file(out, overwrite, inputs=inputs)  # first: also checks that the name fits
    check_run_files(out, overwrite, resume=resume)
    if overwrite and not resume:
        _drop_stale_state(out)


def _check_grid_out(out: Path, n_models: int) -> None:
    """--out of a grid names a folder (made when the first model is written)."""
    from ersm_core.training import check_writable

    if out.suffix.lower() in (".pt", ".pth", ".safetensors") or out.is_file():
        raise ConfigError(f"--seeds/--variants train {n_models} models: --out must be a folder to hold them "
                          f"(<variant>-s<seed>.pt each, e.g. --out {out.with_suffix('')}), not the file {out}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--seeds/--variants train their models in one process; under torchrun train one model at a time")
    check_writable(out / "probe.pt")


def _plan_grid(out: Path, members, o: dict[str, Any], model_config, train_config):
    """(members to train, members to resume) after checking every member's files; finished ones are skipped on --resume."""
    from ersm_core.training import check_run_files, state_path
    from ersm_eval.output import check_output_file

    resuming = {m for m in members if o["resume"] and state_path(m.path(out)).is_file()}
    finished = [m for m in members if o["resume"] and m not in resuming and m.path(out).is_file()]
    if o["resume"] and not resuming and not finished:
        raise ConfigError(f"nothing to resume in {out}: no model of this grid was started there; start without --resume")
    for member in finished:
        _check_finished(member, member.path(out), model_config, train_config)
    todo = [m for m in members if m not in finished]
    for member in todo:
        check_output_file(member.path(out), o["overwrite"], inputs=[o["data_root"], o["weights"]])
        check_run_files(member.path(out), o["overwrite"], resume=member in resuming)
    return todo, resuming, finished


def _check_finished(member, path: Path, model_config, train_config) -> None:
    """On --resume a finished member is kept only when it was trained with the options given now."""
    from dataclasses import replace

    from ersm_core.checkpoint import read_payload
    from ersm_core.plain import to_plain
    from ersm_core.training.state import comparable_train_config

    payload = read_payload(path)
    saved_config = dict(payload["config"])
    want = to_plain(replace(model_config, variant=member.variant, num_classes=saved_config.get("num_classes")).to_dict())
    want_train = comparable_train_config(to_plain(replace(train_config, seed=member.seed).to_dict()))
    saved_train = comparable_train_config(to_plain((payload.get("provenance") or {}).get("train_config") or {}))
    if to_plain(saved_config) != want or saved_train != want_train:
        raise ConfigError(f"cannot resume the grid: {path} was trained with other options; repeat the original "
                          "options, or start afresh with --overwrite")


def _train_grid_command(o: dict[str, Any], members) -> None:
    """Check everything, then train the members one after another and save each as it finishes."""
    from ersm_core.training import state_path

    out: Path = o["out"]
    _check_grid_out(out, len(members))
    data, model_config, train_config = _configs(o)
    todo, resuming, finished = _plan_grid(out, members, o, model_config, train_config)
    if o["overwrite"] and not o["resume"]:
        for member in todo:
            state_path(member.path(out)).unlink(missing_ok=True)
    if finished:
        console.print(f"kept (finished): {', '.join(m.name for m in finished)}", highlight=False, soft_wrap=True)
    written = _run_grid(o, data, model_config, train_config, todo, resuming)
    console.print(f"{len(written) + len(finished)} of {len(members)} models in {out}", highlight=False, soft_wrap=True)


def _grid_display(display: "ProgressDisplay"):
    """GridProgress printing one line per member start and finish with the grid's elapsed time and time left."""
    from cli.progress import format_duration
    from ersm_core.training import GridProgress

    def _times(elapsed: float, left: float | None) -> str:
        return f"grid elapsed {format_duration(elapsed)}, left {format_duration(left) if left is not None else '-'}"

    class GridDisplay(GridProgress):
        def member_start(self, index, total, member, elapsed, left) -> None:
            display.message(f"[{index}/{total}] {member.variant} seed {member.seed}: training | {_times(elapsed, left)}")

        def member_end(self, index, total, member, result, elapsed, left) -> None:
            display.message(f"[{index}/{total}] {member.variant} seed {member.seed}: done, test "
                            f"{_pct(result.metrics['test_acc'])} | {_times(elapsed, left)}")

        def run(self, member):
            return _train_display(display)

    return GridDisplay()


def _run_grid(o: dict[str, Any], data, model_config, train_config, todo, resuming) -> list[Path]:
    """Train and save the members; on Ctrl-C / SIGTERM say what was written and how to continue."""
    from contextlib import closing

    from cli.progress import ProgressDisplay
    from ersm_core.training import history_path, state_path, train_grid

    out, written = o["out"], []
    try:
        with ProgressDisplay(enabled=not o["quiet"]) as display:
            if not o["quiet"]:
                display.message(f"input: {data.image_size} px, crop {data.crop_pct:.4g}, {data.interpolation} ({data.source})")
            grid = train_grid(model_config, train_config, todo, weights=o["weights"], progress=_grid_display(display),
                              files=lambda m: (history_path(m.path(out)), state_path(m.path(out))), resume=resuming)
            with closing(grid):  # a stopped grid drops its shared features (and spill folder) at once
                for member, result in grid:
                    _save_and_print(result, data, member.path(out))
                    written.append(member.path(out))
    except KeyboardInterrupt as stop:
        how = "Stopped (SIGTERM)" if isinstance(stop, Terminated) else "Interrupted"
        err_console.print(f"[bold red]{how}:[/] {len(written)} of {len(todo)} models written in {out}; continue with "
                          "the same options and --resume (finished models are kept, a stopped one continues).",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(code=143 if isinstance(stop, Terminated) else 130) from None
    return written
