"""Occluders for the input-level occlusion stress test: fills × patterns.

A *pattern* says which pixels are hidden, as boolean masks [len(severities), S, S]
for an S×S image; a *fill* says what replaces them. Patterns are seeded from
``numpy.random.default_rng([seed, dataset_index, condition_id(name)])`` (the
noise fill's stream is :mod:`ersm_eval.fills`'), so an
image gets the same occluder for every checkpoint, batch size, worker count or
process count, and the random stream of one pattern never depends on the other
patterns, fills or severities asked for.

Severity is an area fraction in [0, 1]:

- ``random_squares``: fraction of the image covered by squares (side 1/8 of the
  image side) dropped at random positions until the target is reached; the last
  square is trimmed pixel by pixel (nearest its centre first) so the covered
  pixel count is exactly ``round(severity · S²)``. Masks are nested: the mask of
  a lower severity lies inside the mask of a higher one.
- ``grid``: a g×g grid of cells (``grid_size``, default 4) at a seeded random
  phase (wrapping around the border). Every other cell (checkerboard) holds a
  centred rectangle, all the same share of their cell, until those cells are
  full; the rest of the target then goes to the other cells. With an even g,
  severity 0.5 hides exactly every other cell. Area within about 1% of the
  target at 64 px and more (cell rounding).
- ``center``: one centred rectangle of area s·S² (not seeded).
- ``object``: fraction of the *object's* pixels covered (severity 1.0 = the whole
  object), by random squares restricted to the object mask (side 1/8 of the
  square root of the object area). Needs object masks or boxes (boxes act as masks).
- ``background``: the same for the pixels outside the object (1.0 = all background).

Fills are :func:`ersm_eval.fills.fill`, the same as input-level deletion's, in
normalized image space (what the model sees) with the mean/std of the
checkpoint's own transform: ``gray`` is that normalization mean (fill ``mean``: 0
after normalization; for ImageNet-normalized backbones the ImageNet mean colour,
for the compact CNN the mean the checkpoint was built with), ``black`` is pixel
value 0, i.e. (0 − mean)/std, ``noise`` is standard normal noise from
``default_rng([seed, dataset_index])`` (per seed and image, shared by all
patterns), ``blur`` is a Gaussian-blurred copy of the image (σ = 4% of the image
side, reflect padding).
"""

from __future__ import annotations

import hashlib
import math
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ersm_core.errors import ConfigError
from ersm_core.registry import Registry
from ersm_eval.fills import fill

__all__ = [
    "Pattern",
    "Fill",
    "PATTERNS",
    "FILLS",
    "condition_id",
    "occluder_rng",
    "shared_pattern_masks",
    "random_squares_masks",
    "grid_masks",
    "center_masks",
    "pattern_masks",
    "fill_values",
    "apply_occluder",
    "check_severities",
    "SQUARE_FRACTION",
    "BLUR_SIGMA_FRACTION",
]

SQUARE_FRACTION = 1.0 / 8.0  # square side / sqrt(area of the region the squares cover)
BLUR_SIGMA_FRACTION = 0.04  # Gaussian σ of the blur fill / image side


# -- seeding ------------------------------------------------------------------------------
def condition_id(name: str) -> int:
    """A stable (platform- and run-independent) integer for a pattern or fill name."""
    return zlib.crc32(name.encode("utf-8"))


def occluder_rng(seed: int, index: int, name: str) -> np.random.Generator:
    """The generator of one occluder: ``default_rng([seed, dataset_index, condition_id(name)])``."""
    return np.random.default_rng([int(seed), int(index), condition_id(name)])


def check_severities(severities: Sequence[float]) -> tuple[float, ...]:
    """Sorted, de-duplicated severities in [0, 1], always starting with 0 (the clean image)."""
    values = []
    for s in severities:
        s = float(s)
        if not (0.0 <= s <= 1.0) or math.isnan(s):
            raise ConfigError(f"severities are area fractions in [0, 1], got {s}")
        values.append(s)
    return tuple(sorted(set(values) | {0.0}))


# -- masks --------------------------------------------------------------------------------
def _nearest_first(height: int, width: int, cy: int, cx: int) -> np.ndarray:
    """Flat indices of an h×w block ordered by Chebyshev distance to (cy, cx), then raster order."""
    yy, xx = np.mgrid[0:height, 0:width]
    dist = np.maximum(np.abs(yy - cy), np.abs(xx - cx)).ravel()
    return np.lexsort((np.arange(height * width), dist))


def random_squares_masks(
    size: int,
    severities: Sequence[float],
    rng: np.random.Generator,
    region: np.ndarray | None = None,
    side: int | None = None,
) -> np.ndarray | None:
    """Nested masks covering exactly ``round(s · |region|)`` region pixels for each severity s.

    Squares of side ``side`` (default ``SQUARE_FRACTION · sqrt(|region|)``) are centred
    on uncovered region pixels drawn from ``rng`` and clipped to the image and the
    region. The sequence of squares depends only on ``rng`` and ``region``; a
    severity's mask is the squares drawn before its target is crossed plus the
    crossing square's new pixels nearest its centre, as many as are still needed.

    Args:
        size: image side S.
        severities: fractions of the region to cover, each in [0, 1].
        rng: the occluder's generator (see :func:`occluder_rng`).
        region: boolean [S, S] pixels that may be covered (None = the whole image).
        side: square side in pixels.

    Returns:
        bool [len(severities), S, S], or None when the region is empty.
    """
    region = np.ones((size, size), dtype=bool) if region is None else np.asarray(region, dtype=bool)
    if region.shape != (size, size):
        raise ValueError(f"region has shape {region.shape}, expected {(size, size)}")
    total = int(region.sum())
    out = np.zeros((len(severities), size, size), dtype=bool)
    if total == 0:
        return None
    side = max(1, int(round(SQUARE_FRACTION * math.sqrt(total)))) if side is None else int(side)
    targets = np.rint(np.asarray(severities, dtype=float) * total).astype(int)
    order = np.argsort(targets, kind="stable")
    pending = [int(j) for j in order if targets[j] > 0]
    pixels = np.flatnonzero(region)
    covered = np.zeros((size, size), dtype=bool)
    count = 0
    while pending:
        # a centre among the uncovered region pixels: rejection first, exact list when crowded
        centre = -1
        for _ in range(32):
            candidate = int(pixels[rng.integers(len(pixels))])
            if not covered.flat[candidate]:
                centre = candidate
                break
        if centre < 0:
            free = np.flatnonzero(region & ~covered)
            centre = int(free[rng.integers(len(free))])
        cy, cx = divmod(centre, size)
        y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
        y1, x1 = min(size, cy - side // 2 + side), min(size, cx - side // 2 + side)
        new = region[y0:y1, x0:x1] & ~covered[y0:y1, x0:x1]
        n_new = int(new.sum())
        while pending and targets[pending[0]] <= count + n_new:
            j = pending.pop(0)
            snapshot = covered.copy()
            need = int(targets[j]) - count
            if need > 0:
                ranked = _nearest_first(y1 - y0, x1 - x0, cy - y0, cx - x0)
                chosen = ranked[new.ravel()[ranked]][:need]
                block = np.zeros(new.size, dtype=bool)
                block[chosen] = True
                snapshot[y0:y1, x0:x1] |= block.reshape(new.shape)
            out[j] = snapshot
        covered[y0:y1, x0:x1] |= new
        count += n_new
    return out


def _centred_rect(height: int, width: int, fraction: float) -> tuple[int, int]:
    """(rows, cols) of a near-square rectangle whose area is closest to ``fraction`` of an h×w cell."""
    if fraction <= 0:
        return 0, 0
    if fraction >= 1:
        return height, width
    area = fraction * height * width
    guess = int(round(math.sqrt(fraction) * width))
    best: tuple[float, int, int, int] | None = None
    for cols in range(max(1, guess - 3), min(width, guess + 3) + 1):
        rows = min(height, max(0, int(round(area / cols))))
        key = (abs(rows * cols - area), abs(rows - cols), rows, cols)
        if best is None or key < best:
            best = key
    return best[2], best[3]


def _fill_centred(mask: np.ndarray, y0: int, y1: int, x0: int, x1: int, fraction: float) -> None:
    rows, cols = _centred_rect(y1 - y0, x1 - x0, fraction)
    top, left = y0 + (y1 - y0 - rows) // 2, x0 + (x1 - x0 - cols) // 2
    mask[top : top + rows, left : left + cols] = True


def grid_masks(size: int, severities: Sequence[float], rng: np.random.Generator, grid_size: int = 4) -> np.ndarray:
    """Checkerboard grid masks: every other cell first, then the others.

    The cells (r + c even) take ``min(1, s·S² / their area)`` of their area each, as
    centred rectangles; what is left of the target goes to the other cells. With an
    even ``grid_size``, severity 0.5 hides exactly every other cell. The grid's phase
    (a shift of up to one cell in each direction, wrapping around) is the first thing
    drawn from ``rng``.
    """
    if grid_size < 1 or grid_size > size:
        raise ConfigError(f"grid size must be between 1 and the image side {size}, got {grid_size}")
    edges = np.rint(np.linspace(0, size, grid_size + 1)).astype(int)
    cell = max(1, size // grid_size)
    dy, dx = int(rng.integers(cell)), int(rng.integers(cell))
    sizes = np.diff(edges)
    first = np.add.outer(np.arange(grid_size), np.arange(grid_size)) % 2 == 0
    area_first = float((np.outer(sizes, sizes) * first).sum())
    area_second = float(size * size) - area_first
    out = np.zeros((len(severities), size, size), dtype=bool)
    for j, s in enumerate(severities):
        target = s * size * size
        fractions = (min(1.0, target / area_first), min(1.0, max(0.0, target - area_first) / area_second) if area_second else 0.0)
        for r in range(grid_size):
            for c in range(grid_size):
                fraction = fractions[0] if first[r, c] else fractions[1]
                _fill_centred(out[j], edges[r], edges[r + 1], edges[c], edges[c + 1], fraction)
        out[j] = np.roll(out[j], (dy, dx), axis=(0, 1))
    return out


def center_masks(size: int, severities: Sequence[float]) -> np.ndarray:
    """One centred rectangle of area s·S² per severity (no randomness)."""
    out = np.zeros((len(severities), size, size), dtype=bool)
    for j, s in enumerate(severities):
        _fill_centred(out[j], 0, size, 0, size, s)
    return out


# -- registries ---------------------------------------------------------------------------
# pattern(size, severities, rng, region, grid_size) -> bool [len(severities), S, S] or None
PatternFn = Callable[[int, Sequence[float], np.random.Generator, "np.ndarray | None", int], "np.ndarray | None"]


@dataclass(frozen=True)
class Pattern:
    """A registered occlusion pattern."""

    fn: PatternFn  # the mask generator
    needs_mask: bool = False  # needs the object mask (object / background)
    seeded: bool = True  # draws from the rng (otherwise the same for every seed)
    help: str = ""  # one line for --help and the docs


PATTERNS: Registry[Pattern] = Registry("occlusion pattern")


def _register_pattern(name: str, needs_mask: bool = False, seeded: bool = True, help: str = ""):
    def wrap(fn: PatternFn) -> PatternFn:
        PATTERNS.register(name)(Pattern(fn, needs_mask, seeded, help))
        return fn

    return wrap


@_register_pattern("random_squares", help="random squares covering a fraction of the image")
def _random_squares(size, severities, rng, region, grid_size):
    return random_squares_masks(size, severities, rng)


@_register_pattern("grid", help="every other cell of a g×g grid (0.5), then the rest")
def _grid(size, severities, rng, region, grid_size):
    return grid_masks(size, severities, rng, grid_size)


@_register_pattern("center", seeded=False, help="one centred rectangle")
def _center(size, severities, rng, region, grid_size):
    return center_masks(size, severities)


@_register_pattern("object", needs_mask=True, help="random squares covering a fraction of the object")
def _object(size, severities, rng, region, grid_size):
    return random_squares_masks(size, severities, rng, region=region)


@_register_pattern("background", needs_mask=True, help="random squares covering a fraction of the background")
def _background(size, severities, rng, region, grid_size):
    return random_squares_masks(size, severities, rng, region=~region)


def pattern_masks(
    name: str,
    size: int,
    severities: Sequence[float],
    seed: int,
    index: int,
    object_mask: np.ndarray | None = None,
    grid_size: int = 4,
) -> np.ndarray | None:
    """Masks [len(severities), S, S] of pattern ``name`` for one image, or None where not applicable.

    Args:
        name: a registered pattern.
        size: image side S.
        severities: area fractions.
        seed: occlusion seed.
        index: the image's dataset index.
        object_mask: [S, S] object mask in [0, 1] (> 0.5 is object); needed by object/background.
        grid_size: cells per side of the grid pattern.
    """
    pattern = PATTERNS.get(name)
    region = None
    if pattern.needs_mask:
        if object_mask is None:
            return None
        region = np.asarray(object_mask) > 0.5
    memo = _SHARED.memo
    if memo is None:
        return pattern.fn(size, severities, occluder_rng(seed, index, f"pattern:{name}"), region, grid_size)
    where = None if region is None else hashlib.blake2b(np.packbits(region).tobytes() + repr(region.shape).encode(),
                                                        digest_size=16).digest()
    key = (name, int(size), tuple(float(s) for s in severities), int(seed), int(index), int(grid_size), where)
    with _SHARED.lock:
        found = memo.get(key)
    if found is None:
        found = pattern.fn(size, severities, occluder_rng(seed, index, f"pattern:{name}"), region, grid_size)
        found.setflags(write=False)  # handed to every evaluation that asks: nobody may change it
        with _SHARED.lock:
            found = memo.setdefault(key, found)
    return found


class _SharedMasks:
    """The memo of :func:`shared_pattern_masks` (None outside it) and its lock (evaluations run in threads)."""

    def __init__(self) -> None:
        self.memo: dict[tuple, np.ndarray] | None = None
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            if self.memo is not None:
                self.memo.clear()


_SHARED = _SharedMasks()


@contextmanager
def shared_pattern_masks() -> Iterator[_SharedMasks]:
    """Within the block, :func:`pattern_masks` computes each occluder once and hands the same (read-only)
    masks to every later request for the same pattern, size, severities, seed, image index, grid and
    object mask: the checkpoints of a study bundle occlude the same images alike. The pattern's own
    random stream decides the masks, so they equal what each request would compute. Yields the memo,
    whose ``clear()`` the caller calls between batches to bound its memory."""
    if _SHARED.memo is not None:  # nested: the outer block's memo serves
        yield _SHARED
        return
    _SHARED.memo = {}
    try:
        yield _SHARED
    finally:
        _SHARED.memo = None


# -- fills --------------------------------------------------------------------------------
# fill(images [B,3,S,S] normalized, mean [3], std [3], seeds, indices) -> [B,3,S,S]
FillFn = Callable[[torch.Tensor, Sequence[float], Sequence[float], int, Sequence[int]], torch.Tensor]


@dataclass(frozen=True)
class Fill:
    """A registered occluder fill."""

    fn: FillFn
    seeded: bool = False  # depends on (seed, index)
    help: str = ""


FILLS: Registry[Fill] = Registry("occlusion fill")


def _register_fill(name: str, seeded: bool = False, help: str = ""):
    def wrap(fn: FillFn) -> FillFn:
        FILLS.register(name)(Fill(fn, seeded, help))
        return fn

    return wrap


@_register_fill("gray", help="the normalization mean (0 in normalized space)")
def _gray(images, mean, std, seed, indices):
    return fill(images, "mean", mean, std)


@_register_fill("black", help="pixel value 0, i.e. (0 - mean) / std")
def _black(images, mean, std, seed, indices):
    return fill(images, "black", mean, std)


@_register_fill("noise", seeded=True, help="seeded standard normal noise in normalized space")
def _noise(images, mean, std, seed, indices):
    return fill(images, "noise", mean, std, indices, seed)


@_register_fill("blur", help="Gaussian-blurred copy of the image (sigma = 4% of the side)")
def _blur(images, mean, std, seed, indices):
    return fill(images, "blur", mean, std, sigma=BLUR_SIGMA_FRACTION * images.shape[-1])


def fill_values(name: str, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], seed: int, indices: Sequence[int]) -> torch.Tensor:
    """Replacement values [B, 3, S, S] of fill ``name`` for normalized images [B, 3, S, S]."""
    return FILLS.get(name).fn(images, mean, std, seed, indices)


def apply_occluder(images: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Occluded images: ``fill`` where ``masks`` is True, the image elsewhere.

    Args:
        images: [B, 3, S, S].
        masks: bool [B, S, S] or [B, K, S, S] (K severities).
        fill: [B, 3, S, S].

    Returns:
        [B, 3, S, S] or [B, K, 3, S, S].
    """
    if masks.dim() == 3:
        return torch.where(masks[:, None], fill, images)
    return torch.where(masks[:, :, None], fill[:, None], images[:, None])
