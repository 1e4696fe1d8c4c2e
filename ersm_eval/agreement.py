"""Agreement between token rankings, per image: Spearman and Kendall
correlation of the deletion orders and the overlap of their first k tokens.

Orders are permutations of the N tokens (ties were already broken by the
rankings' stable sort), so both correlations have their closed, tie-free forms
and are computed for all images at once.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ersm_eval.schema import TABLES

__all__ = ["positions", "spearman_orders", "kendall_orders", "topk_overlap", "overlap_k", "ranking_agreement"]

_CHUNK_ELEMENTS = 1 << 24  # images × N² per step of the Kendall computation


def positions(orders: np.ndarray) -> np.ndarray:
    """Inverse permutations: position of each token in each order, [n, N] → [n, N]."""
    orders = np.asarray(orders, dtype=np.int64)
    pos = np.empty_like(orders)
    rows = np.arange(orders.shape[0])[:, None]
    pos[rows, orders] = np.arange(orders.shape[1])[None, :]
    return pos


def spearman_orders(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ between two orders per image (rows), 1 − 6Σd²/(N(N²−1)); [n, N] each → [n]."""
    pa, pb = positions(a), positions(b)
    n_tokens = pa.shape[1]
    if n_tokens < 2:
        return np.full(pa.shape[0], np.nan)
    d2 = ((pa - pb) ** 2).sum(1).astype(np.float64)
    return 1.0 - 6.0 * d2 / (n_tokens * (n_tokens**2 - 1))


def kendall_orders(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's τ between two orders per image: (concordant − discordant) / (N(N−1)/2)."""
    pa, pb = positions(a), positions(b)
    n_images, n_tokens = pa.shape
    if n_tokens < 2:
        return np.full(n_images, np.nan)
    out = np.empty(n_images, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // (n_tokens * n_tokens))
    for start in range(0, n_images, step):
        sa = pa[start : start + step]
        sb = pb[start : start + step]
        sign = np.sign(sa[:, :, None] - sa[:, None, :]) * np.sign(sb[:, :, None] - sb[:, None, :])
        out[start : start + step] = sign.sum((1, 2)) / 2.0  # every pair counted twice
    return out / (n_tokens * (n_tokens - 1) / 2.0)


def overlap_k(n_tokens: int, fraction: float) -> int:
    """k for a top-k overlap at a fraction of N (rounded, at least 1)."""
    return max(1, int(round(fraction * n_tokens)))


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """|first k of a ∩ first k of b| / k per image."""
    pa, pb = positions(a), positions(b)
    return ((pa < k) & (pb < k)).sum(1) / float(k)


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def ranking_agreement(orders: dict[str, np.ndarray], checkpoint: str = "") -> pd.DataFrame:
    """One row per pair of rankings (in the given order): mean and sd over images of
    Spearman and Kendall correlation, and mean top-k overlap at 25% and 50% of N.

    Args:
        orders: ranking name → orders [n_images, N] (same images, same row order).
        checkpoint: value of the ``checkpoint`` column.
    """
    rows = []
    for name_a, name_b in combinations(list(orders), 2):
        a, b = orders[name_a], orders[name_b]
        n_images, n_tokens = a.shape
        rho = spearman_orders(a, b)
        tau = kendall_orders(a, b)
        rows.append({
            "checkpoint": checkpoint,
            "ranking_a": name_a,
            "ranking_b": name_b,
            "n_images": n_images,
            "spearman_mean": float(rho.mean()) if n_images else float("nan"),
            "spearman_sd": _sd(rho),
            "kendall_mean": float(tau.mean()) if n_images else float("nan"),
            "kendall_sd": _sd(tau),
            "overlap25_mean": float(topk_overlap(a, b, overlap_k(n_tokens, 0.25)).mean()) if n_images else float("nan"),
            "overlap50_mean": float(topk_overlap(a, b, overlap_k(n_tokens, 0.50)).mean()) if n_images else float("nan"),
        })
    return pd.DataFrame(rows, columns=TABLES["ranking_agreement.csv"])
