"""Ranking agreement heatmap: mean per-image Spearman correlation between deletion orders."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from reports.figures_style import new_figure, ranking_order, series_of, styled

__all__ = ["agreement_matrix", "plot_ranking_agreement"]


def agreement_matrix(rows: pd.DataFrame, value: str = "spearman_mean") -> pd.DataFrame:
    """Symmetric ranking × ranking matrix of ``value`` (1 on the diagonal, NaN for pairs without a row)."""
    names = ranking_order(list(rows["ranking_a"]) + list(rows["ranking_b"]))
    matrix = pd.DataFrame(np.nan, index=names, columns=names)
    for a, b, v in zip(rows["ranking_a"], rows["ranking_b"], rows[value]):
        matrix.loc[a, b] = matrix.loc[b, a] = v
    for n in names:
        matrix.loc[n, n] = 1.0
    return matrix


@styled
def plot_ranking_agreement(agreement: pd.DataFrame) -> Figure:
    """One annotated heatmap per series of the mean Spearman correlation between rankings.

    Args:
        agreement: ranking_agreement.csv rows, optionally stacked with a ``series`` column.
    """
    agreement = series_of(agreement)
    series = list(pd.unique(agreement["series"]))
    size = max(len(agreement_matrix(agreement[agreement["series"] == s])) for s in series)
    side = 1.2 + 0.5 * size
    ncols = min(2, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = new_figure(side * ncols + 0.9, side * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, (ax, name) in enumerate(zip(axes, series)):
        matrix = agreement_matrix(agreement[agreement["series"] == name])
        labels = [n.replace("_", " ") for n in matrix.index]
        sns.heatmap(
            matrix, ax=ax, vmin=-1, vmax=1, cmap="RdBu_r", annot=True, fmt=".2f", annot_kws={"fontsize": 7},
            square=True, linewidths=0.5, linecolor="white", xticklabels=labels, yticklabels=labels,
            cbar=i == len(series) - 1, cbar_kws={"label": "Spearman ρ (mean over images)", "shrink": 0.8},
        )
        ax.grid(False)
        ax.set_title(name, loc="left")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.tick_params(axis="y", rotation=0, labelsize=7)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    return fig
