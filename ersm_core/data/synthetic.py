"""Synthetic shapes: labelled images with exact object masks, generated in code (SPEC §5).

Each image holds one foreground object whose class is its shape × fill pattern
(``disk-solid``, ``disk-striped``, ``square-solid``, ...), drawn at a random
position and scale, in a random colour brighter than everything behind it,
over a cluttered background: smooth noise texture plus small distractor blobs
and lines. The background has a *style*
(dominant hue and texture frequency, one per class index). With
``spurious=p`` the training background's style equals the label with
probability p, so a model can cheat on the context; in the test split the style
is always independent of the label. This is the context trap ERSM should learn
to ignore (the spurious-background setting of the ERSM paper's pilot study).

Item ``i`` of a split is generated from ``numpy.random.default_rng([seed,
split_id, i])``, so it does not depend on access order, worker count or batch
size. Nothing is read from disk.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ersm_core.data.boxes import bounding_box
from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError

__all__ = ["SHAPES", "PATTERNS", "SyntheticShapes", "render_item"]

SHAPES = ("disk", "square", "triangle", "cross", "ring", "star")
PATTERNS = ("solid", "striped")
CLASS_NAMES = tuple(f"{shape}-{pattern}" for shape in SHAPES for pattern in PATTERNS)
SPLIT_IDS = {"train": 0, "test": 1}

_MIN_SIZE = 16
_OBJECT_SIDE = (0.36, 0.50)  # object diameter as a fraction of the image side
_OFF_CENTRE = (0.6, 1.0)  # how far from the image centre the object sits, as a share of the room it has
_TEXTURE_CELLS = (3, 9)  # noise grid cells per side: coarse and fine background styles
_BACKGROUND_LUMA = (0.28, 0.58)  # luma range of the background texture
_CLUTTER_LUMA = (0.26, 0.62)  # luma range of the distractors
_OBJECT_LUMA = (0.85, 0.97)  # the object is brighter than anything behind it ...
_STRIPE_LUMA = (0.64, 0.72)  # ... and so are its second-colour stripes, so its outline stays clear
_N_BLOBS, _N_LINES = (2, 5), (1, 3)  # distractor counts [low, high)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise in [0, 1] of shape [size, size], smooth over ``size / cells`` pixels."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)).clip(0.0, 1.0)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float HSV in [0, 1] (arrays of one shape) → uint8 RGB [..., 3], through PIL."""
    hsv = np.stack([h % 1.0, s.clip(0, 1), v.clip(0, 1)], axis=-1)
    hsv = (hsv * 255.0 + 0.5).astype(np.uint8)
    if hsv.ndim == 2:  # a list of colours
        hsv = hsv[None]
        return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))[0]
    return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _coloured(hue: np.ndarray, sat: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] of the given hue and saturation, lightened or darkened to the given luma (Rec. 601)."""
    full = _hsv_to_rgb(hue, sat, np.ones_like(hue)).astype(np.float32) / 255.0
    base = np.maximum(full @ _LUMA, 1e-3)[..., None]
    luma = np.asarray(luma, dtype=np.float32)[..., None]
    lighter = full + (1.0 - full) * np.clip((luma - base) / np.maximum(1.0 - base, 1e-3), 0.0, 1.0)
    darker = full * np.minimum(luma / base, 1.0)
    return (np.where(luma >= base, lighter, darker) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, size: int, style: int, n_styles: int) -> np.ndarray:
    """Textured background [size, size, 3] uint8 whose hue and texture frequency are set by ``style``."""
    cells = _TEXTURE_CELLS[style % 2]
    hue = style / n_styles
    tex = 0.65 * _smooth_noise(rng, size, cells) + 0.35 * _smooth_noise(rng, size, 2 * cells + 1)
    tint = _smooth_noise(rng, size, 2)
    h = hue + 0.05 * (tint - 0.5)
    s = 0.45 + 0.35 * tint
    luma = _BACKGROUND_LUMA[0] + (_BACKGROUND_LUMA[1] - _BACKGROUND_LUMA[0]) * tex
    return _coloured(h, s, luma)


def _distractors(rng: np.random.Generator, image: Image.Image) -> None:
    """Small blobs and short lines in random hues, none of them a class shape.

    Their brightness stays in the background's range, so the (brighter) object
    remains the most salient thing in the image.
    """
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    n_blobs, n_lines = int(rng.integers(*_N_BLOBS)), int(rng.integers(*_N_LINES))
    n = n_blobs + n_lines
    colours = _coloured(rng.random(n), rng.uniform(0.3, 1.0, n), rng.uniform(*_CLUTTER_LUMA, n))
    colours = [tuple(int(c) for c in colour) for colour in colours]
    for k in range(n_blobs):
        rx, ry = rng.uniform(0.02, 0.06, size=2) * size
        cx, cy = rng.uniform(0, size, size=2)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colours[k])
    for k in range(n_lines):
        length = rng.uniform(0.08, 0.25) * size
        angle = rng.uniform(0, math.pi)
        x0, y0 = rng.uniform(0, size, size=2)
        width = max(1, int(round(rng.uniform(0.006, 0.02) * size)))
        colour = colours[n_blobs + k]
        draw.line((x0, y0, x0 + length * math.cos(angle), y0 + length * math.sin(angle)), fill=colour, width=width)


def _polygon(shape: str, radius: float) -> list[tuple[float, float]]:
    """Vertices of an upright polygonal shape around the origin (y down)."""
    if shape == "square":
        h = 0.8 * radius  # half side
        pts = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":
        pts = [(radius * math.cos(a), radius * math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif shape == "cross":
        w, r = 0.32 * radius, radius
        pts = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
    elif shape == "star":
        radii = [radius if k % 2 == 0 else 0.45 * radius for k in range(10)]
        pts = [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, np.arange(10) * math.pi / 5 - math.pi / 2)]
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(shape)
    return pts


def _object_mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Boolean [size, size] mask of the object's pixels."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape in ("disk", "ring"):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        if shape == "ring":
            inner = 0.55 * radius
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        draw.polygon([(cx + x, cy + y) for x, y in _polygon(shape, radius)], fill=255)
    return np.asarray(canvas) > 127


def _extent(shape: str, radius: float) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of the shape around the origin."""
    if shape in ("disk", "ring"):
        return -radius, -radius, radius, radius
    pts = np.array(_polygon(shape, radius))
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def _position(rng: np.random.Generator, size: int, extent: tuple[float, float, float, float]) -> tuple[float, float]:
    """Centre (cx, cy) of an object off the image centre, wholly inside the image.

    The centre lies in the direction of a uniform angle, at a uniform
    ``_OFF_CENTRE`` share of the way from the middle of the allowed range to
    its edge (an ellipse inscribed in the range), so a map that simply favours
    the image centre does not find the object.
    """
    x_lo, y_lo, x_hi, y_hi = extent
    lo_x, hi_x = -x_lo + 1, size - 2 - x_hi  # allowed centres: the shape stays 1 px inside the image
    lo_y, hi_y = -y_lo + 1, size - 2 - y_hi
    angle, reach = rng.uniform(0, 2 * math.pi), rng.uniform(*_OFF_CENTRE)
    cx = (lo_x + hi_x) / 2 + reach * (hi_x - lo_x) / 2 * math.cos(angle)
    cy = (lo_y + hi_y) / 2 + reach * (hi_y - lo_y) / 2 * math.sin(angle)
    return cx, cy


def render_item(rng: np.random.Generator, size: int, label: int, style: int, n_styles: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image [size, size, 3] uint8 and its object mask [size, size] bool.

    The object is drawn from ``rng`` before the background, so the same stream
    gives the same object whatever the background style.
    """
    shape, pattern = SHAPES[label // len(PATTERNS)], PATTERNS[label % len(PATTERNS)]
    # object geometry
    radius = rng.uniform(*_OBJECT_SIDE) * size / 2
    cx, cy = _position(rng, size, _extent(shape, radius))
    # object colour: any hue, brighter than the background; stripes in the complementary hue
    hue, sat = rng.random(), rng.uniform(0.5, 1.0)
    luma = np.array([rng.uniform(*_OBJECT_LUMA), rng.uniform(*_STRIPE_LUMA)])
    colours = _coloured(np.array([hue, hue + 0.5]), np.array([sat, 1.0]), luma)
    angle = rng.uniform(0, math.pi)
    period = max(4.0, rng.uniform(0.05, 0.08) * size)

    image = Image.fromarray(_background(rng, size, style, n_styles), mode="RGB")
    _distractors(rng, image)
    pixels = np.array(image)
    mask = _object_mask(shape, size, cx, cy, radius)
    first = _pattern_field(pattern, size, angle, period)
    pixels[mask & first] = colours[0]
    pixels[mask & ~first] = colours[1]
    return pixels, mask


def _pattern_field(pattern: str, size: int, angle: float, period: float) -> np.ndarray:
    """Boolean [size, size]: True where the object takes its first colour, False for the second."""
    if pattern == "solid":
        return np.ones((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((xx * math.cos(angle) + yy * math.sin(angle)) / period) % 1.0 < 0.5  # striped


class SyntheticShapes(ERSMDataset):
    """Shapes × patterns on cluttered, optionally label-correlated backgrounds.

    Args:
        split: ``train`` or ``test``.
        transform: only ``image_size``, ``mean``/``std`` and ``hflip`` are used;
            images are generated at ``image_size`` (``crop_pct`` is ignored).
        seed: generator seed; the same seed gives the same images.
        num_classes: 2 to 12 classes (shape-major: disk-solid, disk-striped, square-solid, ...).
        n_train: training images.
        n_test: test images.
        spurious: probability in [0, 1] that a training image's background style equals its label.
    """

    name = "synthetic"
    has_masks = True
    has_boxes = True

    def __init__(
        self,
        split: str,
        transform: ImageTransform,
        seed: int = 0,
        num_classes: int = 10,
        n_train: int = 2000,
        n_test: int = 500,
        spurious: float = 0.0,
    ) -> None:
        if split not in SPLIT_IDS:
            raise DatasetError(f"unknown split {split!r}; use 'train' or 'test'")
        if not 2 <= int(num_classes) <= len(CLASS_NAMES):
            raise DatasetError(f"synthetic num_classes must be between 2 and {len(CLASS_NAMES)}, got {num_classes}")
        if not 0.0 <= float(spurious) <= 1.0:
            raise DatasetError(f"synthetic spurious is a probability in [0, 1], got {spurious}")
        if int(n_train) < 0 or int(n_test) < 0:
            raise DatasetError(f"synthetic n_train and n_test must be non-negative, got {n_train} and {n_test}")
        if int(seed) < 0:
            raise DatasetError(f"synthetic seed must be non-negative, got {seed}")
        if transform.image_size < _MIN_SIZE:
            raise DatasetError(f"synthetic images need image_size >= {_MIN_SIZE}, got {transform.image_size}")
        if transform.crop_pct != 1.0:  # generated at the output size: no resize, no crop
            transform = replace(transform, crop_pct=1.0)
        super().__init__(split, transform)
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.size = int(n_train) if split == "train" else int(n_test)
        self.spurious = float(spurious)
        self.classes = list(CLASS_NAMES[: self.num_classes])

    def __len__(self) -> int:
        return self.size

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_IDS[self.split], int(index)])

    def label_of(self, index: int) -> int:
        """Class of item ``index`` (classes cycle, so every prefix is balanced)."""
        return int(index) % self.num_classes

    @staticmethod
    def _style(rng: np.random.Generator, label: int, n_styles: int, p: float) -> int:
        # always two draws, so the rest of the stream does not depend on ``spurious``
        tied, free = rng.random(), int(rng.integers(n_styles))
        return label if tied < p else free

    def style_of(self, index: int) -> int:
        """Background style of item ``index``: a class index, equal to the label only by chance in the test split."""
        p = self.spurious if self.split == "train" else 0.0
        return self._style(self._rng(index), self.label_of(index), self.num_classes, p)

    def load(self, index: int) -> RawItem:
        rng = self._rng(index)
        label = self.label_of(index)
        p = self.spurious if self.split == "train" else 0.0
        style = self._style(rng, label, self.num_classes, p)
        pixels, mask = render_item(rng, self.transform.image_size, label, style, self.num_classes)
        box = bounding_box(mask)  # the generator always draws an object inside the image
        return RawItem(
            image=Image.fromarray(pixels, mode="RGB"),
            label=label,
            mask=Image.fromarray(mask.astype(np.uint8) * 255, mode="L"),
            box=box,
        )

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed, "spurious": self.spurious}


_OPTIONS = ("seed", "num_classes", "n_train", "n_test", "spurious")


@DATASETS.register("synthetic")
def build_synthetic(root: Path | None, split: str, transform: ImageTransform, **options) -> SyntheticShapes:
    """Build the synthetic dataset; ``root`` is not used (nothing is read from disk)."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise DatasetError(f"unknown synthetic option(s) {unknown}; valid options: {', '.join(_OPTIONS)}")
    return SyntheticShapes(split, transform, **options)
