"""Where a model's input transform comes from: timm's pretrained config, or the compact CNN's defaults.

A timm backbone was trained with one input size, crop fraction, resize filter and
normalization; a model fine-tuned or evaluated on top of it should see images
prepared the same way. :func:`backbone_data_config` reads them from timm's
pretrained config (``timm.data.resolve_data_config``; nothing is downloaded),
:func:`resolve_data_config` applies the user's overrides (``--image-size``,
``--crop-pct``, ``--interpolation``). The ERSM authors evaluate with a different,
named convention: resize the shorter side to 1.14·S and centre-crop S
(``crop_pct = 1/1.14``, ``--crop-pct authors``).

The resolved values go into the model's config (so a checkpoint rebuilds the
same transform) and :meth:`ImageTransform.describe` goes into every checkpoint's
provenance and every evaluation's summary.

:func:`resize_crop_geometry` is the one home of the resize-and-crop arithmetic, and
it is timm's evaluation transform's, integer for integer
(``timm.data.create_transform(..., is_training=False)``): the resize target is
``floor(S / crop_pct)``, torchvision's shorter-side resize truncates the longer
side, and the centre crop's offset is ``round((resized − S) / 2)`` with Python's
rounding, so an image reaches the model exactly as timm's own validation prepares it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ersm_core.errors import ConfigError

__all__ = [
    "AUTHORS_CROP_PCT",
    "COMPACT_CNN_DATA",
    "CROP_MODES",
    "CROP_PRESETS",
    "DataConfig",
    "ResizeCrop",
    "backbone_data_config",
    "parse_crop_pct",
    "resize_crop_geometry",
    "resize_target",
    "resolve_data_config",
]

AUTHORS_CROP_PCT = 1 / 1.14  # the ERSM authors' evaluation: resize to 1.14·S, centre-crop S
CROP_PRESETS = {"authors": AUTHORS_CROP_PCT, "none": 1.0}  # named --crop-pct settings
CROP_MODES = ("center", "squash", "border")  # timm's evaluation crop modes


def resize_target(image_size: int, crop_pct: float) -> int:
    """The side the image is resized to before the crop: ``floor(S / crop_pct)``, as timm computes it."""
    return math.floor(image_size / crop_pct)


@dataclass(frozen=True)
class ResizeCrop:
    """Where an image of a given size goes: resized to ``width × height``, then the ``S × S`` window
    whose top-left corner is (``left``, ``top``) in the resized image is kept. A negative offset
    means the window starts outside the image: that many rows or columns of padding (border mode)."""

    width: int
    height: int
    left: int
    top: int


def _center_offset(resized: int, size: int) -> int:
    """Offset of a centred window of ``size`` along a side of ``resized``, as timm's/torchvision's centre
    crop places it: ``round((resized − size) / 2)`` (Python rounding) when cropping, and
    ``−(size − resized) // 2`` (padding on the left/top) when the side is shorter than the window."""
    if resized < size:
        return -((size - resized) // 2)
    return int(round((resized - size) / 2.0))


def resize_crop_geometry(width: int, height: int, image_size: int, crop_pct: float, crop_mode: str = "center") -> ResizeCrop:
    """The evaluation resize and crop of a ``width × height`` image to ``image_size``, as timm's does it.

    ``center`` (timm's default): the shorter side becomes ``floor(S / crop_pct)`` and the longer
    side ``int(that · longer / shorter)`` (torchvision's shorter-side resize), then a centre crop.
    ``squash``: both sides become ``floor(S / crop_pct)`` (the aspect ratio is not kept), then a
    centre crop. ``border``: the longer side becomes ``floor(S / crop_pct)`` and each side is
    ``round(side / ratio)``; a side shorter than S is padded on both sides (the extra pixel on the
    right/bottom), a longer one centre-cropped.

    Raises:
        ConfigError: an unknown crop mode, a crop fraction outside (0, 1] or an empty image.
    """
    if crop_mode not in CROP_MODES:
        raise ConfigError(f"unknown crop mode {crop_mode!r}; use one of {', '.join(CROP_MODES)}")
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if width < 1 or height < 1:
        raise ConfigError(f"an image of {width}x{height} pixels has nothing to resize")
    target = resize_target(image_size, crop_pct)
    if crop_mode == "squash":
        new_w = new_h = target
    elif crop_mode == "border":
        ratio = max(height / target, width / target)
        new_h, new_w = round(height / ratio), round(width / ratio)
    else:
        short, long = min(width, height), max(width, height)
        new_long = int(target * long / short)
        new_w, new_h = (target, new_long) if width <= height else (new_long, target)
    return ResizeCrop(new_w, new_h, _center_offset(new_w, image_size), _center_offset(new_h, image_size))


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for one backbone; ``asdict`` goes into provenance."""

    image_size: int  # square input side S
    crop_pct: float  # resize the shorter side to S / crop_pct, then centre-crop S
    interpolation: str  # image resize filter (masks always use nearest)
    mean: tuple[float, ...]  # per-channel normalization
    std: tuple[float, ...]
    source: str  # where these values come from, e.g. "timm pretrained config of resnet50"

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# the compact CNN's settings (unchanged since the first release): 128 px, no crop, bilinear, mean 0.5, std 0.25
COMPACT_CNN_DATA = DataConfig(128, 1.0, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "compact_cnn defaults")


def backbone_data_config(backbone: str) -> DataConfig:
    """The input settings a backbone was trained with.

    ``compact_cnn`` has fixed defaults; a timm model's come from its pretrained
    config, read with ``timm.data.resolve_data_config`` without creating weights
    or downloading anything.

    Raises:
        ConfigError: an unknown backbone name.
    """
    if backbone == "compact_cnn":
        return COMPACT_CNN_DATA
    import timm
    from timm.data import resolve_data_config as timm_resolve

    if not timm.is_model(backbone):
        raise ConfigError(
            f"unknown backbone {backbone!r}: use 'compact_cnn' or a timm model name such as resnet50, convnext_tiny, efficientnetv2_s"
        )
    from ersm_core.data.base import INTERPOLATIONS

    pretrained = timm.get_pretrained_cfg(backbone)
    cfg = timm_resolve(pretrained_cfg=pretrained.to_dict() if pretrained is not None else {})
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:  # timm's "random" etc. are training-time choices
        interpolation = "bicubic"
    return DataConfig(
        image_size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
        interpolation=interpolation,
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        source=(f"timm pretrained config of {backbone}" if pretrained is not None else f"timm defaults ({backbone} has no pretrained config)")
        + _crop_mode_note(cfg.get("crop_mode")),
    )


def _crop_mode_note(crop_mode: str | None) -> str:
    """Provenance note for a backbone whose timm config asks for a crop other than the centre crop used here."""
    return "" if crop_mode in (None, "center") else f" (its timm crop_mode {crop_mode!r} is applied as a centre crop)"


def parse_crop_pct(value: str | float | None) -> float | None:
    """``--crop-pct``: a fraction in (0, 1], or a named setting (``authors`` = 1/1.14, ``none`` = 1); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name in CROP_PRESETS:
            return CROP_PRESETS[name]
        try:
            value = float(name)
        except ValueError:
            raise ConfigError(
                f"--crop-pct takes a fraction in (0, 1] or one of {', '.join(CROP_PRESETS)}, got {value!r}"
            ) from None
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"--crop-pct must be in (0, 1] (the share of the resized image kept), got {value}")
    return value


def resolve_data_config(
    backbone: str,
    image_size: int | None = None,
    crop_pct: str | float | None = None,
    interpolation: str | None = None,
) -> DataConfig:
    """The backbone's data config with the given overrides (None keeps the backbone's value).

    Raises:
        ConfigError: an unknown backbone, a bad size, crop fraction or filter.
    """
    from ersm_core.data.base import INTERPOLATIONS

    base = backbone_data_config(backbone)
    crop = parse_crop_pct(crop_pct)
    if image_size is not None and image_size < 8:
        raise ConfigError(f"--image-size must be at least 8, got {image_size}")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown --interpolation {interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
    overridden = [name for name, v in (("image_size", image_size), ("crop_pct", crop), ("interpolation", interpolation)) if v is not None]
    source = base.source + (f", overridden: {', '.join(overridden)}" if overridden else "")
    if crop is not None and isinstance(crop_pct, str) and crop_pct.strip().lower() in CROP_PRESETS:
        source += f" (crop_pct {crop_pct.strip().lower()!r})"
    return DataConfig(
        image_size=int(image_size) if image_size is not None else base.image_size,
        crop_pct=crop if crop is not None else base.crop_pct,
        interpolation=interpolation if interpolation is not None else base.interpolation,
        mean=base.mean,
        std=base.std,
        source=source,
    )
