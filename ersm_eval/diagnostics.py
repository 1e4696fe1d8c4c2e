"""Energy diagnostics: why an energy ranking behaves as it does.

For a model with the Energy-Mask Layer, three per-image numbers, then their mean
over images with a bootstrap 95% interval (table ``energy_diagnostics.csv``):

* ``pairwise_share``: the mean over tokens of E^p_i / (E^u_i + E^p_i). Both terms
  are α·softplus(u) and β·softplus(p), never negative, so the share lies in [0, 1];
  1 means the pairwise (neighbour-similarity) term decides the energy.
* ``spearman_center``: Spearman correlation of the energy with the ``center``
  ranking's score, the token's closeness to the grid centre. The score of a token is
  N − 1 − its position in the ``center`` order (so distance ties are broken by lower
  index, as that ranking breaks them), and the energy is ranked as the ``energy``
  ranking orders the tokens (highest first, ties by lower index). Both are then
  permutations, and the correlation is exactly the Spearman correlation of the
  ``energy`` and ``center`` deletion orders that ``ranking_agreement.csv`` reports.
* ``spearman_neighbours``: Spearman correlation of the energy (ranked as above) with
  each token's count of existing Moore neighbours (3 at a corner, 5 on an edge, 8
  inside), with average ranks for the counts' ties. Under ``pairwise_reduce =
  "sum"`` the pairwise term adds one cosine per neighbour, so a positive
  correlation here means inner tokens get more energy for having more neighbours.

Positive correlations mean high energy in the middle (which the ``energy`` ranking
deletes first). :func:`ersm_eval.verdicts.follows_position` turns them into a warning.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ersm_eval.agreement import positions, spearman_orders
from ersm_eval.rankings import center_order, stable_order
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_mean_ci, bootstrap_weights

__all__ = [
    "DIAGNOSTIC_METRICS",
    "neighbour_counts",
    "center_scores",
    "pairwise_share",
    "rank_pearson",
    "energy_diagnostic_values",
    "energy_diagnostics",
]

DIAGNOSTIC_METRICS = ("pairwise_share", "spearman_center", "spearman_neighbours")


def neighbour_counts(grid: tuple[int, int]) -> np.ndarray:
    """Existing Moore neighbours of every token of an h×w grid, [N] int64 (3 corner, 5 edge, 8 inside)."""
    grid_h, grid_w = int(grid[0]), int(grid[1])
    rows = np.minimum(np.arange(grid_h) + 1, grid_h - 1) - np.maximum(np.arange(grid_h) - 1, 0) + 1  # rows in the 3×3 box
    cols = np.minimum(np.arange(grid_w) + 1, grid_w - 1) - np.maximum(np.arange(grid_w) - 1, 0) + 1
    return (rows[:, None] * cols[None, :] - 1).reshape(-1).astype(np.int64)


def center_scores(grid: tuple[int, int]) -> np.ndarray:
    """The ``center`` ranking's score of every token: N − 1 − its position in the center order, [N].

    The token nearest the grid centre scores N − 1; distance ties are broken as the
    ranking breaks them (lower index first, so it scores higher).
    """
    order = center_order(grid)
    return (len(order) - 1 - positions(order[None])[0]).astype(np.float64)


def pairwise_share(energy_unary, energy_pairwise) -> np.ndarray:
    """Per image, the mean over tokens of E^p / (E^u + E^p); [B, N] each → [B].

    Tokens whose energy is exactly 0 (both terms 0) have no share and are left out;
    an image with no such token left gives NaN.
    """
    eu = np.asarray(energy_unary, dtype=np.float64)
    ep = np.asarray(energy_pairwise, dtype=np.float64)
    total = eu + ep
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, ep / np.where(total > 0, total, 1.0), np.nan)
        return np.nanmean(share, axis=-1) if share.shape[-1] else np.full(share.shape[:-1], np.nan)


def rank_pearson(ranks_a: np.ndarray, ranks_b: np.ndarray) -> np.ndarray:
    """Pearson correlation of two rank vectors per row ([n, N] each, or [N] broadcast) → [n].

    Spearman's correlation is this on ranks; a row that is constant gives NaN.
    """
    a = np.asarray(ranks_a, dtype=np.float64)
    b = np.asarray(ranks_b, dtype=np.float64)
    a, b = np.broadcast_arrays(a, b)
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    denom = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values, method="average").astype(np.float64)


def energy_diagnostic_values(scores: Mapping[str, torch.Tensor | np.ndarray], grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-image diagnostics of one batch, each [B] float64, keyed by :data:`DIAGNOSTIC_METRICS`.

    Args:
        scores: the model's token scores (``energy``, ``energy_unary``, ``energy_pairwise``, each [B, N]).
        grid: the token grid (h, w).
    """
    energy = torch.as_tensor(scores["energy"]).detach().cpu()
    n_tokens = energy.shape[1]
    energy_order = stable_order(energy, descending=True).numpy()  # exactly the energy ranking's order
    center = np.broadcast_to(center_order(grid), energy_order.shape)
    energy_rank = (n_tokens - 1 - positions(energy_order)).astype(np.float64)  # highest energy ranks N − 1
    neighbours = _average_ranks(neighbour_counts(grid))
    return {
        "pairwise_share": pairwise_share(
            torch.as_tensor(scores["energy_unary"]).detach().cpu().double().numpy(),
            torch.as_tensor(scores["energy_pairwise"]).detach().cpu().double().numpy(),
        ),
        "spearman_center": spearman_orders(energy_order, center),
        "spearman_neighbours": rank_pearson(energy_rank, neighbours[None, :]),
    }


def energy_diagnostics(
    values: Mapping[str, np.ndarray], checkpoint: str = "", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The table ``energy_diagnostics.csv``: per metric the mean over images and a bootstrap 95% interval.

    Images whose value is NaN (a constant energy map, say) are left out of that metric.

    Args:
        values: metric name → per-image values [n] (as from :func:`energy_diagnostic_values`).
        checkpoint: value of the ``checkpoint`` column.
        n_boot: bootstrap resamples.
        seed: seed of the resamples.
    """
    rows = []
    for metric in DIAGNOSTIC_METRICS:
        if metric not in values:
            continue
        v = np.asarray(values[metric], dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            rows.append({"checkpoint": checkpoint, "metric": metric, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan})
            continue
        low, high = bootstrap_mean_ci(v, weights=bootstrap_weights(len(v), n_boot, seed))
        rows.append({"checkpoint": checkpoint, "metric": metric, "value": float(v.mean()),
                     "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows, columns=TABLES["energy_diagnostics.csv"])
