"""What a run is made of: the model and training configs and the bounds of every option.

The one home of these settings. :class:`ModelConfig` and :class:`TrainConfig` are
frozen dataclasses validated once, in ``__post_init__``; :data:`MAX_VALUES` holds the
upper bound of every numeric field that sizes memory or overflows beyond it. The
checkpoint reader checks a stranger's config against these fields and bounds before
anything is built, and the ``train`` command takes its defaults and bounds from here.
This module imports neither torch nor numpy, so ``--help`` and the checks stay fast.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any

from ersm_core.errors import ConfigError

__all__ = [
    "ModelConfig", "TrainConfig", "VARIANT_NAMES", "ENERGY_VARIANTS", "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE",
    "MIN_CROP_PCT", "MAX_VALUES", "SYNTHETIC_OPTIONS", "field_kinds", "check_max",
]

#: the built-in spatial modules (ersm_core.model registers one builder per name)
VARIANT_NAMES = ("baseline", "dropblock", "spatial_dropout", "l0", "ersm_unary", "ersm_full")
ENERGY_VARIANTS = ("ersm_unary", "ersm_full")

# Input side in pixels. ImageNet CNNs run at 224-600 px; the largest input of any pretrained timm
# model is 1024 (SAM; its largest CNN, efficientnet_l2, runs at 800). A config may not ask for
# more: the size sets the memory of every image and feature map a run allocates.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
# Smallest centre-crop share: the eval resize is image_size / crop_pct per side (at most 4 × image_size).
MIN_CROP_PCT = 0.25

#: Upper bound of each numeric field (ModelConfig and TrainConfig): beyond it a run allocates
#: what it cannot hold (image side, class, image and view counts) or overflows (learning rate,
#: energy weights). Lower bounds are checked in ``__post_init__`` with their own messages.
MAX_VALUES: dict[str, int | float] = {
    "num_classes": 100_000,  # head outputs
    "image_size": MAX_IMAGE_SIZE,
    "patch_size": 1_024,
    "block_size": 1_024,  # DropBlock block side on the map
    "alpha": 1e6, "beta": 1e6, "l0_lambda": 1e6, "tau": 1e6,
    "lr": 10.0, "weight_decay": 10.0,
    "n_train": 10_000_000, "n_test": 10_000_000,  # synthetic images generated
    "feature_views": 64,  # cached views per training image
}

# options of the synthetic dataset that TrainConfig carries (field name = option name)
SYNTHETIC_OPTIONS = ("num_classes", "n_train", "n_test", "spurious")


def check_max(name: str, value: Any) -> None:
    """ConfigError when the number ``value`` of field ``name`` exceeds ``MAX_VALUES[name]``."""
    top = MAX_VALUES.get(name)
    if top is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if math.isfinite(value) and value > top:
        raise ConfigError(f"{name} must be at most {top:g}, got {value:g}")


def _variant_names() -> list[str]:
    """The built-in variants and any registered since (looked up only when ersm_core.model is loaded)."""
    model = sys.modules.get("ersm_core.model")
    registered = model.VARIANTS.names() if model is not None else []
    return [*VARIANT_NAMES, *(name for name in registered if name not in VARIANT_NAMES)]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; ``to_dict`` goes into checkpoints and reports."""

    num_classes: int  # classes of the new Linear head
    backbone: str = "compact_cnn"  # 'compact_cnn' or a timm CNN name
    variant: str = "ersm_full"  # baseline, dropblock, spatial_dropout, l0, ersm_unary, ersm_full
    image_size: int = 128  # square input side after the transform
    patch_size: int = 1  # P: tokens are P×P patches of the insertion-point map
    alpha: float = 1e-3  # weight of the unary energy
    beta: float = 1e-3  # weight of the pairwise energy (forced to 0 for ersm_unary)
    tau: float = 1.0  # gate temperature
    init_keep: float = 0.9  # initial keep probability of the gate
    pairwise_reduce: str = "sum"  # 'sum' (authors' code) or 'mean' over Moore neighbours
    bias: str = "scalar"  # 'scalar' b, or 'per_token' as the authors' code has
    drop_prob: float = 0.1  # DropBlock / spatial-dropout rate
    block_size: int = 3  # DropBlock block size on the map
    l0_lambda: float = 1e-2  # weight of the expected-L0 penalty
    pretrained: bool = False  # timm pretrained weights at construction (training only)
    freeze_backbone: bool = False  # backbone in eval mode with no gradients
    mean: tuple[float, ...] = ()  # input normalization; empty = the backbone's own
    std: tuple[float, ...] = ()
    crop_pct: float = 0.0  # eval resize = image_size / crop_pct; 0 = the backbone's own
    interpolation: str = ""  # image resize filter (bilinear, bicubic, ...); empty = the backbone's own

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.variant not in _variant_names():
            raise ConfigError(f"unknown variant {self.variant!r}; valid names: {', '.join(_variant_names())}")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] pixels, got {self.image_size}")
        _check_model_ranges(self)
        if self.variant == "ersm_unary" and self.beta != 0.0:
            object.__setattr__(self, "beta", 0.0)
        if self.variant == "ersm_full" and self.beta <= 0.0:
            raise ConfigError("ersm_full needs beta > 0; use --variant ersm_unary for beta = 0")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists for tuples), safe for JSON and ``weights_only`` checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys {unknown}; was it written by a newer ersm-eval?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _check_model_ranges(cfg: ModelConfig) -> None:
    """Range checks of the numeric options, each a ConfigError naming the option and its valid range."""
    if cfg.patch_size < 1:
        raise ConfigError(f"patch_size must be at least 1, got {cfg.patch_size}")
    for name in ("num_classes", "patch_size", "block_size", "alpha", "beta", "l0_lambda", "tau"):
        check_max(name, getattr(cfg, name))
    if cfg.backbone == "compact_cnn" and cfg.image_size // 16 < cfg.patch_size:
        raise ConfigError(
            f"image_size {cfg.image_size} is too small for compact_cnn with patch size {cfg.patch_size}: its feature "
            f"map is image_size/16 = {cfg.image_size // 16} positions wide; use --image-size {16 * cfg.patch_size} or more"
        )
    for name in ("alpha", "beta", "tau", "init_keep", "drop_prob", "l0_lambda", "crop_pct"):
        value = getattr(cfg, name)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
    for name in ("alpha", "beta", "l0_lambda", "crop_pct"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be 0 or more, got {getattr(cfg, name)}")
    if cfg.tau <= 0:
        raise ConfigError(f"tau must be positive, got {cfg.tau}")
    if not 0.0 < cfg.init_keep < 1.0:
        raise ConfigError(f"init_keep is a probability strictly between 0 and 1, got {cfg.init_keep}")
    if not 0.0 <= cfg.drop_prob < 1.0:
        raise ConfigError(f"drop_prob must lie in [0, 1), got {cfg.drop_prob} (1 would drop every position)")
    if cfg.block_size < 1:
        raise ConfigError(f"block_size must be at least 1, got {cfg.block_size}")
    if cfg.crop_pct != 0 and not MIN_CROP_PCT <= cfg.crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be 0 (the backbone's own) or in [{MIN_CROP_PCT}, 1], got {cfg.crop_pct}")
    for name in ("mean", "std"):
        values = getattr(cfg, name)
        if len(values) not in (0, 3):
            raise ConfigError(f"{name} holds {len(values)} values; give none (the backbone's own) or 3, one per RGB channel")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must hold 3 finite numbers, got {values!r}")
            if name == "std" and value <= 0:
                raise ConfigError(f"std must hold 3 positive numbers (inputs are divided by it), got {values!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; ``to_dict`` goes into the checkpoint's provenance and the resume state."""

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
    feature_cache_dir: str | None = None  # cached training: keep the features in this folder (reused by later runs)

    def __post_init__(self) -> None:
        for name in ("data_root", "feature_cache_dir"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number, 0 or more, got {self.weight_decay}")
        for name in ("lr", "weight_decay", "n_train", "n_test", "feature_views"):
            check_max(name, getattr(self, name))
        for name in ("seed", "workers", "subset_seed", "feature_views"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 when given, got {value}")
        if self.dataset != "synthetic":
            given = [name for name in SYNTHETIC_OPTIONS if getattr(self, name) is not None]
            if given:
                raise ConfigError(
                    f"option(s) {', '.join(given)} only apply to the synthetic dataset, not {self.dataset!r}"
                )
        if not (0.0 <= self.val_fraction < 1.0 and math.isfinite(self.val_fraction)):
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.feature_views and self.feature_cache is False:
            raise ConfigError("feature_views applies to cached training only; drop --feature-views or --no-feature-cache")
        if self.feature_cache_dir is not None and self.feature_cache is False:
            raise ConfigError("feature_cache_dir applies to cached training only; drop --feature-cache-dir or --no-feature-cache")

    def dataset_options(self) -> dict[str, Any]:
        """Keyword options for :func:`ersm_core.data.build_dataset` (only those given)."""
        if self.dataset != "synthetic":
            return {}
        return {name: getattr(self, name) for name in SYNTHETIC_OPTIONS if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict for provenance."""
        return asdict(self)


def field_kinds(cls: type) -> dict[str, str]:
    """Field name → kind ('int', 'float', 'str', 'bool', 'vector') of a config dataclass, from its annotations."""
    kinds = {}
    for f in fields(cls):
        text = str(f.type).replace(" | None", "")
        kinds[f.name] = "vector" if text.startswith("tuple") else text
    return kinds
