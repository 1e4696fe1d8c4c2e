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

Those four fills do not look at which pixels are hidden. One fill does
(:data:`MASKED_FILL_KINDS`, through :func:`fill_deleted`, which takes the mask):

- ``nli``: noisy linear imputation, the fill of ROAD (Rong et al., 2022, "A
  Consistent and Efficient Evaluation Strategy for Attribution Methods"). Every
  deleted pixel takes the weighted mean of its 8 neighbours, with ROAD's published
  weights: 1/6 for each of the 4 direct neighbours and 1/12 for each of the 4
  diagonal ones (the weights of neighbours outside the image are left out and the
  rest renormalized). Deleted neighbours are unknowns too, so the values solve one
  sparse linear system per image (scipy.sparse), shared by the channels: for each
  deleted pixel u, Σ_v w_uv · (x_u − x_v) = 0. Small Gaussian noise is then added
  to the deleted pixels (σ = 0.01 by default, ROAD's default, in normalized image
  space), drawn as the ``noise`` fill draws it (``default_rng([seed,
  dataset_index])``), so an image's fill does not depend on its batch. A deletion
  that hides every pixel leaves nothing to interpolate: those pixels take the
  normalization mean (0) plus the noise. Deleted regions blend into their
  surroundings, so the model cannot tell *where* pixels were deleted from sharp
  edges of a constant patch, which is what leaks the ranking's shape into a plain
  fill's curve.

:func:`insertion_images` is the input-level insertion of the both-orders test:
start from the blurred image and put back the original pixels under the first k
tokens of an order. Input-level deletion with ``insertion=True`` computes the same
images in batched chunks (:func:`ersm_eval.deletion.input_deletion_logits` with
``insertion=True``); the tests hold the two equal.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from scipy import sparse
from scipy.sparse.linalg import splu

from ersm_core.errors import ConfigError
from ersm_eval.forward import fixed_chunks

__all__ = [
    "FILL_KINDS",
    "MASKED_FILL_KINDS",
    "MIN_BLUR_SIGMA",
    "NLI_NOISE",
    "NLI_WEIGHTS",
    "fill",
    "fill_deleted",
    "noise_fill",
    "noisy_linear_imputation",
    "insertion_images",
    "blur_kernel_size",
    "token_blur_sigma",
]

FILL_KINDS = ("mean", "black", "noise", "blur")  # fills that ignore which pixels are hidden
MASKED_FILL_KINDS = ("nli",)  # fills computed from the hidden pixels' surroundings (see fill_deleted)
MIN_BLUR_SIGMA = 0.5  # pixels: a smaller σ barely changes the image
NLI_NOISE = 0.01  # σ of the noise added to imputed pixels (ROAD's default), normalized image space
# (row offset, column offset) → weight of that neighbour in the imputation (ROAD's weights)
NLI_WEIGHTS = {(-1, 0): 1 / 6, (1, 0): 1 / 6, (0, -1): 1 / 6, (0, 1): 1 / 6,
               (-1, -1): 1 / 12, (-1, 1): 1 / 12, (1, -1): 1 / 12, (1, 1): 1 / 12}


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
    if kind in MASKED_FILL_KINDS:
        raise ConfigError(f"the {kind!r} fill depends on which pixels are deleted; call fill_deleted with the mask")
    raise ConfigError(f"unknown fill {kind!r}; use one of: {', '.join(FILL_KINDS + MASKED_FILL_KINDS)}")


def _nli_one(image: np.ndarray, deleted: np.ndarray) -> np.ndarray:
    """Noisy linear imputation without the noise: image [C, H, W] float64, deleted [H, W] bool."""
    channels, height, width = image.shape
    out = image.reshape(channels, -1).copy()
    unknown = np.flatnonzero(deleted.reshape(-1))
    if unknown.size == 0:
        return out.reshape(image.shape)
    if unknown.size == height * width:  # nothing known to interpolate from: the normalization mean
        out[:] = 0.0
        return out.reshape(image.shape)
    equation = np.full(height * width, -1, dtype=np.int64)
    equation[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, width)
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    a_rows, a_cols, a_vals = [], [], []
    for (dr, dc), weight in NLI_WEIGHTS.items():
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        source = np.flatnonzero(inside)  # equations whose pixel has this neighbour
        neighbour = r[inside] * width + c[inside]
        diagonal[source] += weight
        other = equation[neighbour]
        known = other < 0
        rhs[source[known]] += weight * out[:, neighbour[known]].T  # one neighbour per offset: no repeats
        a_rows.append(source[~known])
        a_cols.append(other[~known])
        a_vals.append(np.full(int((~known).sum()), -weight))
    index = np.arange(unknown.size)
    matrix = sparse.csc_matrix(
        (np.concatenate([diagonal, *a_vals]), (np.concatenate([index, *a_rows]), np.concatenate([index, *a_cols]))),
        shape=(unknown.size, unknown.size),
    )
    out[:, unknown] = splu(matrix).solve(rhs).T
    return out.reshape(image.shape)


def noisy_linear_imputation(
    images: torch.Tensor,
    deleted: torch.Tensor,
    indices: Sequence[int],
    seed: int = 0,
    noise_std: float = NLI_NOISE,
) -> torch.Tensor:
    """Images [B, C, H, W] whose ``deleted`` pixels [B, H, W] are filled by noisy linear imputation.

    Each deleted pixel solves x_u = Σ_v w_uv x_v / Σ_v w_uv over its neighbours v inside
    the image (weights :data:`NLI_WEIGHTS`: 1/6 direct, 1/12 diagonal), with every
    deleted pixel an unknown, per channel, in float64; then ``noise_std`` times the
    standard normal noise of :func:`noise_fill` (``default_rng([seed, indices[b]])``) is
    added to the deleted pixels. Kept pixels are returned unchanged.
    """
    deleted = _pixel_mask(images, deleted)
    if len(indices) != images.shape[0]:
        raise ValueError(f"the nli fill needs one dataset index per image: {len(indices)} for {images.shape[0]}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number ≥ 0, got {noise_std}")
    array = images.detach().cpu().double().numpy()
    mask = deleted.cpu().numpy()
    noise = noise_fill(images.shape[1:], indices, seed).double().numpy()
    out = np.stack([_nli_one(array[b], mask[b]) + noise_std * noise[b] * mask[b][None] for b in range(len(array))])
    filled = torch.from_numpy(out).to(device=images.device, dtype=images.dtype)
    return torch.where(deleted[:, None], filled, images)


def _pixel_mask(images: torch.Tensor, deleted: torch.Tensor) -> torch.Tensor:
    """The deleted-pixel mask as bool [B, H, W] on the images' device ([B, 1, H, W] accepted)."""
    deleted = torch.as_tensor(deleted)
    if deleted.dim() == 4 and deleted.shape[1] == 1:
        deleted = deleted[:, 0]
    expected = (images.shape[0], *images.shape[2:])
    if tuple(deleted.shape) != expected:
        raise ValueError(f"the deleted-pixel mask must be [B, H, W] = {expected}, got {tuple(deleted.shape)}")
    return deleted.to(device=images.device, dtype=torch.bool)


def fill_deleted(
    images: torch.Tensor,
    deleted: torch.Tensor,
    kind: str,
    mean: Sequence[float],
    std: Sequence[float],
    indices: Sequence[int] = (),
    seed: int = 0,
    sigma: float | None = None,
    noise_std: float = NLI_NOISE,
) -> torch.Tensor:
    """Images [B, C, H, W] with the ``deleted`` pixels [B, H, W] replaced by fill ``kind``.

    Any of :data:`FILL_KINDS` (through :func:`fill`) or :data:`MASKED_FILL_KINDS`
    (``nli``: :func:`noisy_linear_imputation` with ``indices``, ``seed``, ``noise_std``).
    Kept pixels are the images' own values.
    """
    mask = _pixel_mask(images, deleted)
    if kind == "nli":
        return noisy_linear_imputation(images, mask, indices, seed, noise_std)
    return torch.where(mask[:, None], fill(images, kind, mean, std, indices, seed, sigma), images)


def insertion_images(
    images: torch.Tensor,
    orders: torch.Tensor,
    steps: Sequence[int] | np.ndarray,
    grid: tuple[int, int],
    sigma: float | None = None,
) -> torch.Tensor:
    """Input-level insertion: [B, S, C, H, W], the blurred image with the first k tokens of each order put back.

    Args:
        images: normalized images [B, C, H, W].
        orders: per image, the order tokens are inserted in [B, N] (MoRF: most important first).
        steps: the k values (tokens inserted), each in 0..N; k = 0 is the blurred image, k = N the image.
        grid: the token grid (h, w); pixel (y, x) lies under token (⌊y·h/H⌋, ⌊x·w/W⌋).
        sigma: the blur's σ in pixels; default half a token's side (:func:`token_blur_sigma`).
    """
    from ersm_eval.deletion import token_pixel_map  # deletion imports this module

    batch, channels = images.shape[:2]
    n_tokens = int(grid[0]) * int(grid[1])
    if tuple(orders.shape) != (batch, n_tokens):
        raise ValueError(f"orders must be [B, N] = {(batch, n_tokens)}, got {tuple(orders.shape)}")
    k = torch.as_tensor(np.asarray(steps, dtype=np.int64), device=images.device)
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > n_tokens):
        raise ValueError(f"insertion steps must lie in 0..{n_tokens}, got {k.tolist()}")
    if sigma is None:
        sigma = token_blur_sigma(tuple(images.shape[2:]), tuple(grid))
    blurred = fill(images, "blur", (0.0,) * channels, (1.0,) * channels, sigma=sigma)
    orders = orders.to(images.device).long()
    ranks = torch.empty_like(orders)
    ranks.scatter_(1, orders, torch.arange(n_tokens, device=images.device).expand_as(orders).contiguous())
    pixel_rank = ranks[:, token_pixel_map(tuple(images.shape[2:]), tuple(grid), images.device)]  # [B, H, W]
    inserted = pixel_rank[:, None] < k[None, :, None, None]  # [B, S, H, W]
    return torch.where(inserted[:, :, None], images[:, None], blurred[:, None])
