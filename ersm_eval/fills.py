"""What replaces hidden pixels: the one fill of input-level deletion and of the occlusion stress test.

Every fill acts in normalized image space (what the model sees), with the mean and
std of the images' own normalization:

- ``mean``: the normalization mean, i.e. 0 after normalization (the occlusion
  test calls it ``gray``);
- ``black``: pixel value 0, i.e. (0 − mean) / std per channel;
- ``noise``: standard normal noise in normalized space, one stream per image:
  ``numpy.random.default_rng([seed, dataset_index]).standard_normal((3, H, W))``
  (float64 draws rounded to float32), so an image gets the same noise whatever
  the batch, batch size, worker or process count;
- ``blur``: a Gaussian-blurred copy of the image with the σ (in pixels) the
  caller passes (at least 0.5), kernel side 2·⌈3σ⌉ + 1 (capped below twice the
  image side, as reflect padding needs), reflect padding, run in fixed-size
  chunks (:func:`ersm_eval.forward.fixed_chunks`) so an image's blur does not
  depend on its batch.

Each protocol keeps its own documented σ: deletion blurs with half a token's side
(:func:`token_blur_sigma`), occlusion with 4% of the image side
(:data:`ersm_eval.occluders.BLUR_SIGMA_FRACTION`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF

from ersm_core.errors import ConfigError
from ersm_eval.forward import fixed_chunks

__all__ = ["FILL_KINDS", "MIN_BLUR_SIGMA", "fill", "noise_fill", "blur_kernel_size", "token_blur_sigma"]

FILL_KINDS = ("mean", "black", "noise", "blur")
MIN_BLUR_SIGMA = 0.5  # pixels: a smaller σ barely changes the image


def noise_fill(shape: Sequence[int], indices: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Standard normal noise [B, *shape] (float32), image b drawn from ``default_rng([seed, indices[b]])``."""
    noise = [np.random.default_rng([int(seed), int(i)]).standard_normal(tuple(shape)).astype(np.float32)
             for i in indices]
    return torch.from_numpy(np.stack(noise)) if noise else torch.zeros((0, *shape))


def blur_kernel_size(sigma: float, height: int, width: int) -> int:
    """Odd kernel side 2·⌈3σ⌉ + 1, capped at the largest odd number below twice the shorter image side."""
    kernel = 2 * math.ceil(3 * sigma) + 1
    return min(kernel, 2 * ((min(height, width) - 1) // 2) + 1)


def token_blur_sigma(image_hw: tuple[int, int], grid: tuple[int, int]) -> float:
    """Deletion's blur σ: half a token's side in pixels, min(H/h, W/w) / 2."""
    return min(image_hw[0] / grid[0], image_hw[1] / grid[1]) / 2.0


def fill(
    images: torch.Tensor,
    kind: str,
    mean: Sequence[float],
    std: Sequence[float],
    indices: Sequence[int] = (),
    seed: int = 0,
    sigma: float | None = None,
) -> torch.Tensor:
    """Replacement values [B, C, H, W] of fill ``kind`` for normalized images [B, C, H, W].

    Args:
        images: normalized images.
        kind: one of :data:`FILL_KINDS` (see the module docstring).
        mean: the normalization mean per channel (``black`` needs it).
        std: the normalization std per channel (``black`` needs it).
        indices: each image's dataset index (``noise``).
        seed: the noise seed (``noise``).
        sigma: the blur's σ in pixels (``blur``; at least :data:`MIN_BLUR_SIGMA` is used).

    Returns:
        A new tensor on the images' device, in their dtype.
    """
    if kind == "mean":
        return torch.zeros_like(images)
    if kind == "black":
        m = torch.as_tensor(mean, dtype=images.dtype, device=images.device)
        s = torch.as_tensor(std, dtype=images.dtype, device=images.device)
        return (-m / s).view(1, -1, 1, 1).expand_as(images).clone()
    if kind == "noise":
        if len(indices) != images.shape[0]:
            raise ValueError(f"the noise fill needs one dataset index per image: {len(indices)} for {images.shape[0]}")
        return noise_fill(images.shape[1:], indices, seed).to(device=images.device, dtype=images.dtype)
    if kind == "blur":
        if sigma is None:
            raise ValueError("the blur fill needs sigma (pixels)")
        sigma = max(MIN_BLUR_SIGMA, float(sigma))
        kernel = blur_kernel_size(sigma, images.shape[-2], images.shape[-1])
        return fixed_chunks(lambda x: TF.gaussian_blur(x, kernel_size=[kernel, kernel], sigma=[sigma, sigma]), images)
    raise ConfigError(f"unknown fill {kind!r}; use one of: {', '.join(FILL_KINDS)}")
