"""The arithmetic of deletion: k values, kept-token sums, and the logits after deleting k tokens.

The fast path (:func:`deletion_logits`) gets every k and ranking from one cumulative
sum over the reversed order; :func:`deletion_logits_general` rebuilds the masked map
and re-runs pool → head for each k (the obvious path the tests hold it to);
:func:`input_deletion_logits` fills image regions and re-runs the full model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ersm_core.errors import ConfigError
from ersm_eval.cam import token_values

__all__ = [
    "deletion_steps",
    "suffix_sums",
    "kept_pooled",
    "deletion_logits",
    "deletion_logits_descending",
    "deletion_logits_general",
    "token_pixel_map",
    "input_deletion_logits",
]

_POOL_BUDGET = 1 << 23  # float64 elements of [images, curves, N, C] held at once by the fast path


def deletion_steps(n_tokens: int, steps: int | None = None) -> np.ndarray:
    """The k values of a curve: all of 0..N−1, or ``steps`` evenly spaced ones with 0 and N−1."""
    if n_tokens < 2:
        raise ConfigError(f"deletion needs at least 2 tokens; this model's map has {n_tokens} (lower --patch-size)")
    if steps is None or steps >= n_tokens:
        return np.arange(n_tokens, dtype=np.int64)
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    return np.unique(np.round(np.linspace(0, n_tokens - 1, steps)).astype(np.int64))


def _kept_sums_descending(values: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """:func:`suffix_sums` with the k axis in descending order (no flip of the big tensor)."""
    n_tokens = values.shape[1]
    rows = torch.arange(values.shape[0], device=values.device)[:, None, None]
    reverse = values[rows, orders.flip(2)]  # [B, R, N, D]: tokens from the last deleted to the first
    reverse.cumsum_(2)  # reverse[:, :, j] = sum of order[N−1−j:], the kept set after N−1−j deletions
    positions = n_tokens - 1 - steps.flip(0)  # ascending j for descending k
    if len(positions) == n_tokens and bool((positions == torch.arange(n_tokens, device=steps.device)).all()):
        return reverse
    # advanced indexing: index_select along an inner dim is far slower on the CPU
    return reverse[:, :, positions]


def suffix_sums(values: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Sum of the per-token ``values`` over the tokens kept after deleting the first k of each order.

    The kept tokens are order[k:], a suffix of the order: a cumulative sum over the
    reversed order gives them for every k at once, with no subtraction (so no
    cancellation when few tokens remain).

    Args:
        values: per-token vectors [B, N, D] (float64 for exactness).
        orders: deletion orders [B, R, N].
        steps: the k values [S], ascending (long, same device).

    Returns:
        [B, R, S, D].
    """
    return _kept_sums_descending(values, orders, steps).flip(2)


def _denominator(n_tokens: int, steps: torch.Tensor, rescale: bool, positions: int, dtype: torch.dtype) -> torch.Tensor:
    """Positions pooled over at each k: (N−k)·P² with rescaling, else N·P²; [S]."""
    if rescale:
        return (n_tokens - steps).to(dtype) * positions
    return torch.full(steps.shape, float(n_tokens * positions), dtype=dtype, device=steps.device)


def kept_pooled(sums: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor, rescale: bool, positions: int) -> torch.Tensor:
    """Pooled vectors after deleting the first k tokens of each order, for every k in ``steps``.

    Args:
        sums: token sums [B, N, C] (see :func:`ersm_eval.cam.token_sums`).
        orders: [B, R, N] deletion orders.
        steps: [S] k values (long, on the same device).
        rescale: divide by the remaining positions (N−k)·P² instead of all N·P².
        positions: P², positions per token.

    Returns:
        [B, R, S, C] in the dtype of ``sums``.
    """
    denom = _denominator(sums.shape[1], steps, rescale, positions, sums.dtype)
    return suffix_sums(sums, orders, steps) / denom[:, None]


def _head(model: Any, pooled: torch.Tensor, rows: int) -> torch.Tensor:
    """Logits of pooled vectors [M, C] in chunks of ``rows``."""
    parts = [model.forward_head(pooled[i : i + rows]) for i in range(0, pooled.shape[0], rows)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


@torch.no_grad()
def deletion_logits(
    model: Any,
    feature_map: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    rescale: bool = True,
    head_rows: int = 16384,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fast path: logits [B, R, S, K] after deleting the first k tokens of each order, every k in ``steps``.

    ``feature_map`` is the map deletion acts on (X, or Y = gate(X) for soft gating).
    With a linear head (logits = W·pooled + b) the head's weights are applied to the N
    token sums first and the suffix sums run over logit contributions (K numbers per
    token instead of C): the same affine map, in another order, and far cheaper for
    wide maps. Otherwise the pooled vectors of every (ranking, k) go through the head
    in batched calls of ``head_rows``. ``values`` passes :func:`token_values` when the
    caller has them already.
    """
    return deletion_logits_descending(model, feature_map, orders, steps, rescale, head_rows, values).flip(2)


def deletion_logits_descending(model, feature_map, orders, steps, rescale=True, head_rows=16384, values=None):
    """:func:`deletion_logits` with the k axis in descending order (the evaluator flips its small results)."""
    batch, n_curves, n_tokens = orders.shape
    channels = feature_map.shape[1]
    patch = model.config.patch_size
    steps_t = torch.as_tensor(np.asarray(steps), dtype=torch.long, device=feature_map.device)
    n_steps = len(steps_t)
    linear = model.head_is_linear
    if values is None:
        values = token_values(model, feature_map)
    per_image = max(1, _POOL_BUDGET // max(1, n_curves * n_tokens * values.shape[2]))
    dtype = feature_map.dtype
    # 1 / pooled positions per k (descending), applied after the exact wide sums are rounded
    scale = (1.0 / _denominator(n_tokens, steps_t.flip(0), rescale, patch * patch, values.dtype)).to(dtype)[:, None]
    bias = model.head.bias.to(dtype) if linear and model.head.bias is not None else None
    out = []
    for start in range(0, batch, per_image):
        sl = slice(start, start + per_image)
        kept = _kept_sums_descending(values[sl], orders[sl], steps_t).to(dtype)  # [b, R, S, D]
        # in place and in the model's dtype (mixed-dtype kernels are several times slower on the CPU)
        if bias is not None:
            torch.addcmul(bias, kept, scale, out=kept)  # logits of a linear head
        else:
            kept.mul_(scale)
        b = kept.shape[0]
        logits = kept if linear else _head(model, kept.reshape(-1, channels), head_rows)
        out.append(logits.reshape(b, n_curves, n_steps, -1))
    return torch.cat(out) if len(out) > 1 else out[0]


@torch.no_grad()
def deletion_logits_general(
    model: Any,
    feature_map: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    rescale: bool = True,
) -> torch.Tensor:
    """General path: for every ranking and k, zero the deleted tokens' positions, pool
    (GAP·N/(N−k) with ``rescale``) and run the head; logits [B, R, S, K]."""
    from ersm_core.energy import untokenize_scale

    batch, n_curves, n_tokens = orders.shape
    patch = model.config.patch_size
    out = []
    for r in range(n_curves):
        per_k = []
        for k in np.asarray(steps).tolist():
            keep = torch.ones(batch, n_tokens, dtype=feature_map.dtype, device=feature_map.device)
            keep.scatter_(1, orders[:, r, :k], 0.0)
            pooled = model.pool(untokenize_scale(feature_map, keep, patch))
            if rescale:
                pooled = pooled * (n_tokens / (n_tokens - k))
            per_k.append(model.forward_head(pooled))
        out.append(torch.stack(per_k, 1))
    return torch.stack(out, 1)


def token_pixel_map(image_hw: tuple[int, int], grid: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Token index of every image pixel, [H_img, W_img] long: pixel (y, x) lies under token
    (⌊y·h/H_img⌋, ⌊x·w/W_img⌋) of the h×w grid."""
    img_h, img_w = image_hw
    grid_h, grid_w = grid
    rows = torch.arange(img_h, device=device) * grid_h // img_h
    cols = torch.arange(img_w, device=device) * grid_w // img_w
    return rows[:, None] * grid_w + cols[None, :]


@torch.no_grad()
def input_deletion_logits(
    model: Any,
    images: torch.Tensor,
    fills: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    chunk: int = 64,
    masked_fill: Any = None,
    insertion: bool = False,
) -> torch.Tensor:
    """Input level: logits [B, R, S, K] of the full model on images whose regions under the
    first k tokens of each order are replaced by ``fills``; (image, ranking, k) jobs are
    batched ``chunk`` at a time. ``masked_fill(images, deleted, rows)`` (a fill that looks at
    which pixels are hidden, e.g. ``nli``) replaces ``fills`` when given: ``rows`` are the
    jobs' image rows of the batch.

    ``insertion=True`` hides the complement instead: the regions under the first k tokens
    keep the image and every other region takes ``fills`` (with the blurred image as
    ``fills``, the input-level insertion of :func:`ersm_eval.fills.insertion_images`)."""
    batch, n_curves, n_tokens = orders.shape
    device = images.device
    steps_t = torch.as_tensor(np.asarray(steps), dtype=torch.long, device=device)
    n_steps = len(steps_t)
    ranks = torch.empty_like(orders)
    ranks.scatter_(2, orders, torch.arange(n_tokens, device=orders.device).expand_as(orders).contiguous())
    pix = token_pixel_map(tuple(images.shape[2:]), model.grid, device)  # [Hi, Wi]
    pix_rank = ranks[:, :, pix]  # [B, R, Hi, Wi]: deletion position of the token under each pixel
    jobs = torch.arange(batch * n_curves * n_steps, device=device)
    out = []
    for start in range(0, len(jobs), chunk):
        job = jobs[start : start + chunk]
        b, r, s = job // (n_curves * n_steps), (job // n_steps) % n_curves, job % n_steps
        deleted = pix_rank[b, r] < steps_t[s][:, None, None]
        if insertion:
            deleted = ~deleted
        if masked_fill is not None:
            x = masked_fill(images[b], deleted, b)
        else:
            x = torch.where(deleted[:, None], fills[b], images[b])
        out.append(model(x))
    return torch.cat(out).reshape(batch, n_curves, n_steps, -1)

