"""Orders: what a ranking claims, tested in both directions (MoRF and LeRF).

Every ranking stands on an *importance score* s_i per token: higher means "more
important to the prediction", as the ranking itself claims (:data:`IMPORTANCE`).

| ranking | s_i |
|---|---|
| ``energy`` | −E_i (high energy marks the "unstable" tokens deleted first) |
| ``unary`` | −u_i (the order of the keep probability π_i) |
| ``magnitude`` | ‖t_i‖₂ |
| ``cam`` | the token's contribution to the predicted class's logit |
| ``center`` | −distance of the token centre to the grid centre |
| an external map | the map's value (the saliency convention) |
| ``random`` | none: a seeded permutation, the reference |

Two orders come from one score (:func:`orders_from_scores`), both stable with ties
broken by the lower token index: **MoRF** ("most relevant first") deletes the
highest s_i first, **LeRF** ("least relevant first") the lowest. The existing
``energy``, ``unary``, ``magnitude`` and ``cam`` rankings are LeRF orders and
``center`` a MoRF one; ``border`` is ``center``'s order reversed, which equals
LeRF of ``center``'s score except inside groups of equal distance (a reversal puts
the higher index first there, LeRF the lower).

Per image, the normalized areas under the curves of both orders give the
**symmetric gain** SG_i = AUC_i(LeRF) − AUC_i(MoRF) (Blücher et al., 2024). Whatever
deleting does to the input distribution hits both orders alike and cancels in the
difference; what is left is what the ranking knows. Its mean over images gets a
paired bootstrap 95% interval and p-value from :mod:`ersm_eval.stats`; ``random``
has a single order and an SG of 0 by construction. ``sg_minus_center`` pairs a
ranking's SG with the ``center`` ranking's on the same images: a ranking carries
more than position only when that difference's interval lies above 0.

At feature level both orders come from the same backbone pass and the same token
values (:func:`both_order_logits`). Insertion there (:func:`feature_insertion_logits`:
keep only the first k tokens of an order, pool by the mean over them) adds nothing:
insertion in MoRF order at k keeps the same tokens as LeRF deletion at N − k, so
the logits are equal, except where a group of tied scores straddles the cut (MoRF
takes the tie's lower indices first, and LeRF deletes them first too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ersm_eval.stats import normalized_auc, paired_bootstrap_test

__all__ = [
    "ORDERS",
    "Importance",
    "IMPORTANCE",
    "importance_scores",
    "orders_from_scores",
    "order_areas",
    "symmetric_gain",
    "GainSummary",
    "summarize_gain",
    "random_symmetric_gain",
    "sg_minus_center",
    "both_order_logits",
    "feature_insertion_logits",
]

ORDERS = ("morf", "lerf")  # most relevant first, least relevant first


@dataclass(frozen=True)
class Importance:
    """How a ranking's importance score s_i (higher = claimed more important) is read."""

    source: str  # token_scores key, "cam", "position" or "external"; "" for random (no score)
    sign: float  # s_i = sign · source value
    claim: str  # what the ranking claims, in words
    current_order: str  # the order the ranking's existing curve runs in ("morf", "lerf" or "" for random)


IMPORTANCE: dict[str, Importance] = {
    "energy": Importance("energy", -1.0, "low energy E_i marks what the model needs", "lerf"),
    "unary": Importance("unary", -1.0, "low unary potential u_i (high keep probability) marks what it needs", "lerf"),
    "magnitude": Importance("magnitude", 1.0, "large token norms mark what it needs", "lerf"),
    "cam": Importance("cam", 1.0, "a large contribution to the predicted logit marks what it needs", "lerf"),
    "center": Importance("position", -1.0, "tokens near the grid centre are what it needs", "morf"),
    "external": Importance("external", 1.0, "a high map value marks what it needs", "morf"),
    "random": Importance("", 0.0, "nothing: a seeded permutation, the reference", ""),
}


def _center_distance2(grid: tuple[int, int]) -> torch.Tensor:
    """(2·distance)² of every token centre to the grid centre, exact integers as float64, [N]."""
    grid_h, grid_w = int(grid[0]), int(grid[1])
    rows, cols = np.divmod(np.arange(grid_h * grid_w, dtype=np.int64), grid_w)
    return torch.from_numpy(((2 * rows - (grid_h - 1)) ** 2 + (2 * cols - (grid_w - 1)) ** 2).astype(np.float64))


def importance_scores(ranking: str, scores: Mapping[str, Any], grid: tuple[int, int] | None = None,
                      batch: int | None = None) -> torch.Tensor:
    """The importance score s [B, N] of a ranking (see :data:`IMPORTANCE`).

    Args:
        ranking: a key of :data:`IMPORTANCE`, or the name of an external map present in ``scores``.
        scores: per-token values [B, N]: the model's token scores, ``cam``, external maps.
        grid: the token grid (``center``).
        batch: images (``center`` when ``scores`` holds nothing to take B from).

    Raises:
        ValueError: ``random`` (no score), an unknown ranking, a missing score.
    """
    spec = IMPORTANCE.get(ranking)
    if spec is None:
        if ranking not in scores:
            raise ValueError(f"no importance score for {ranking!r}: neither a known ranking "
                             f"({', '.join(IMPORTANCE)}) nor a map given in the scores")
        spec = IMPORTANCE["external"]
    if spec.source == "":
        raise ValueError("random has no importance score: it is a seeded permutation, the reference")
    if spec.source == "position":
        if grid is None:
            raise ValueError("the center ranking's score needs the token grid")
        if batch is None:
            batch = len(next(iter(scores.values()))) if scores else 1
        return (-_center_distance2(grid)).expand(batch, -1).clone()
    key = ranking if spec.source == "external" else spec.source
    if key not in scores:
        raise ValueError(f"the {ranking} ranking needs the score {key!r}, which was not given "
                         f"(given: {', '.join(scores) or 'none'})")
    value = torch.as_tensor(scores[key])
    return value * spec.sign if spec.sign != 1.0 else value.clone()


def orders_from_scores(scores: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """MoRF and LeRF orders of importance scores [B, N] (or [..., N]), ties by lower token index in both.

    MoRF is a stable sort of −s (highest s first), LeRF a stable sort of s (lowest
    first); equal scores keep the lower token index first in both, so MoRF is *not*
    LeRF reversed when there are ties. −0.0 and 0.0 are equal.

    Raises:
        ValueError: NaN scores (no order can be defined).
    """
    s = torch.as_tensor(scores)
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if bool(torch.isnan(s).any()):
        raise ValueError("importance scores hold NaN; an order needs a number for every token")
    lerf = torch.sort(s, dim=-1, stable=True).indices
    morf = torch.sort(-s, dim=-1, stable=True).indices
    return morf, lerf


def order_areas(fraction: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Per-image normalized areas of curves [n, S] over the fraction removed [S] (trapezoid / range)."""
    return np.atleast_1d(np.asarray(normalized_auc(fraction, np.asarray(curves, dtype=np.float64)), dtype=np.float64))


def symmetric_gain(fraction: np.ndarray, lerf: np.ndarray, morf: np.ndarray) -> np.ndarray:
    """SG_i = AUC_i(LeRF) − AUC_i(MoRF) per image, from curves [n, S] of both orders on the same steps."""
    lerf, morf = np.asarray(lerf, dtype=np.float64), np.asarray(morf, dtype=np.float64)
    if lerf.shape != morf.shape:
        raise ValueError(f"LeRF and MoRF curves differ in shape: {lerf.shape} vs {morf.shape}")
    return order_areas(fraction, lerf) - order_areas(fraction, morf)


def random_symmetric_gain(n_images: int) -> np.ndarray:
    """Random's SG per image: 0 by construction (one order, no importance to reverse)."""
    return np.zeros(int(n_images), dtype=np.float64)


@dataclass(frozen=True)
class GainSummary:
    """Mean of per-image gains with its paired bootstrap 95% interval and two-sided p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n_images: int


def summarize_gain(values: np.ndarray, weights: np.ndarray | None = None, n_boot: int = 1000,
                   seed: int = 0) -> GainSummary:
    """:class:`GainSummary` of per-image values [n] (an SG, or a paired SG difference).

    ``weights`` from :func:`ersm_eval.stats.bootstrap_weights` share one set of
    resamples between rankings; NaN values raise (every image needs both curves).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        raise ValueError("per-image gains hold NaN or infinite values")
    mean, low, high, _, p = paired_bootstrap_test(v[:, None], weights, n_boot=n_boot, seed=seed)
    return GainSummary(float(mean[0]), float(low[0]), float(high[0]), float(p[0]), int(len(v)))


def sg_minus_center(sg: np.ndarray, sg_center: np.ndarray, weights: np.ndarray | None = None,
                    n_boot: int = 1000, seed: int = 0) -> GainSummary:
    """The paired difference SG_i(ranking) − SG_i(center) over the same images, summarized."""
    sg, sg_center = np.asarray(sg, dtype=np.float64), np.asarray(sg_center, dtype=np.float64)
    if sg.shape != sg_center.shape:
        raise ValueError(f"the ranking's and center's gains cover different images: {sg.shape} vs {sg_center.shape}")
    return summarize_gain(sg - sg_center, weights, n_boot, seed)


# -- both orders from one backbone pass ---------------------------------------------------


@torch.no_grad()
def both_order_logits(model: Any, feature_map: torch.Tensor, scores: torch.Tensor, steps: np.ndarray | torch.Tensor,
                      rescale: bool = True, head_rows: int = 16384,
                      values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion logits of the MoRF and LeRF orders of ``scores`` from one feature map.

    The token values (:func:`ersm_eval.cam.token_values`) are computed once and one
    call of :func:`ersm_eval.deletion.deletion_logits` runs the suffix sums of both
    orders together. The two orders come from two stable sorts of the [B, N] scores:
    flipping the LeRF order would put tied tokens' higher index first.

    Args:
        model: an ERSM model or adapter (``config.patch_size``, ``head``, ``forward_head``).
        feature_map: the map deletion acts on, [B, C, H, W].
        scores: importance scores [B, N] or [B, R, N] (R rankings).
        steps: the k values, ascending.
        rescale: pool by the mean over the remaining positions (GAP·N/(N−k)).
        head_rows: pooled vectors per head call (non-linear heads).
        values: the token values of ``feature_map``, when the caller has them.

    Returns:
        (MoRF logits, LeRF logits), each [B, S, K] for [B, N] scores, [B, R, S, K] for [B, R, N].
    """
    from ersm_eval.deletion.logits import deletion_logits  # the deletion package imports this module

    s = torch.as_tensor(scores).to(feature_map.device)
    single = s.dim() == 2
    if single:
        s = s[:, None]
    morf, lerf = orders_from_scores(s)
    n_rankings = s.shape[1]
    logits = deletion_logits(model, feature_map, torch.cat([morf, lerf], 1), steps, rescale, head_rows, values)
    morf_logits, lerf_logits = logits[:, :n_rankings], logits[:, n_rankings:]
    if single:
        return morf_logits[:, 0], lerf_logits[:, 0]
    return morf_logits, lerf_logits


@torch.no_grad()
def feature_insertion_logits(model: Any, feature_map: torch.Tensor, orders: torch.Tensor,
                             steps: np.ndarray | torch.Tensor, head_rows: int = 16384) -> torch.Tensor:
    """Feature-level insertion: logits [B, R, S, K] keeping only the first k tokens of each order.

    The map is pooled by the mean over the kept tokens' positions (GAP rescaled by
    N/k), so k runs over 1..N. Keeping order[:k] is deleting the first N − k tokens
    of the reversed order, which :func:`ersm_eval.deletion.deletion_logits` computes.
    """
    from ersm_eval.deletion.logits import deletion_logits  # the deletion package imports this module

    n_tokens = orders.shape[-1]
    k = np.asarray(steps, dtype=np.int64)
    if k.size == 0 or k.min() < 1 or k.max() > n_tokens:
        raise ValueError(f"insertion steps must lie in 1..{n_tokens} (at least one token kept), got {k.tolist()}")
    deleted = n_tokens - k  # descending when k ascends
    back = np.argsort(deleted, kind="stable")
    logits = deletion_logits(model, feature_map, orders.flip(-1), deleted[back], True, head_rows)
    out = torch.empty_like(logits)
    out[:, :, torch.as_tensor(back, device=logits.device)] = logits
    return out
