"""Insertion figure: accuracy as the original pixels come back, most important tokens first.

Drawn in the deletion curves' style from insertion_curves.csv alone: one panel per series,
one solid line per ranking (its MoRF order: most important first) with its 95% band, and
random's mean over seeds with the min–max spread across seeds. Higher is better here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ersm_eval import verdicts
from reports.figures_deletion import random_band
from reports.figures_style import ranking_order, ranking_style, series_panels, styled

__all__ = ["plot_insertion_curves"]


def _n_tokens(rows: pd.DataFrame) -> int | None:
    """N implied by ``k / fraction_inserted`` (None when it cannot be told)."""
    rows = rows[(rows["k"] > 0) & (rows["fraction_inserted"] > 0)]
    if rows.empty:
        return None
    ratios = (rows["k"] / rows["fraction_inserted"]).to_numpy(float)
    n = float(np.median(ratios))
    if not math.isfinite(n) or n <= 0 or not np.allclose(ratios, n, rtol=1e-3):
        return None
    return int(round(n))


@styled
def plot_insertion_curves(curves: pd.DataFrame, no_information: frozenset[str] | set[str] = frozenset()) -> Figure:
    """Accuracy (%) against patches inserted into the blurred image: one panel per series, one line per
    ranking (most important first) and random's mean with its band.

    Args:
        curves: insertion_curves.csv rows, optionally stacked over runs with a ``series`` column.
        no_information: series whose model's accuracy interval contains chance; their panels are faded.

    Returns:
        The figure (legend below the panels).
    """
    curves, series, fig, axes, ncols = series_panels(curves)
    handles: dict[str, object] = {}
    for ax, name in zip(axes, series):
        panel = curves[curves["series"] == name]
        for ranking in ranking_order(panel["ranking"]):
            rows = panel[panel["ranking"] == ranking]
            style = ranking_style(ranking)
            if ranking == "random":
                mean, low, high, seeds = random_band(rows)
                label = f"Random insertion (mean of {seeds} seeds)" if seeds > 1 else "Random insertion"
                x, y, lo, hi = mean.index.to_numpy(), mean.to_numpy(), low.to_numpy(), high.to_numpy()
                ax.fill_between(x, lo * 100, hi * 100, color="#888888", alpha=0.3, linewidth=0)
                colour, linestyle, marker = style.colour, style.linestyle, style.marker
            else:
                part = rows.groupby("k")[["accuracy", "ci_low", "ci_high"]].mean()
                x = part.index.to_numpy()
                y, lo, hi = part["accuracy"].to_numpy(), part["ci_low"].to_numpy(), part["ci_high"].to_numpy()
                label = f"{style.label}, most important first (MoRF)"
                ax.fill_between(x, lo * 100, hi * 100, color=style.colour, alpha=0.14, linewidth=0)
                colour, linestyle, marker = style.colour, "-", style.marker
            (line,) = ax.plot(x, y * 100, color=colour, linestyle=linestyle, marker=marker or None,
                              markevery=max(1, len(x) // 8), markersize=4, label=label, zorder=3)
            handles.setdefault(label, line)
        title = name
        if name in no_information:
            title += f" ({verdicts.AT_CHANCE})"
            for artist in [*ax.lines, *ax.collections]:
                artist.set_alpha(0.25)
        ax.set_title(title, loc="left")
        ax.set_xlabel("Patches put back into the blurred image (k)")
        ax.set_xlim(panel["k"].min(), panel["k"].max())
        n = _n_tokens(panel)
        if n:
            top = ax.secondary_xaxis("top", functions=(lambda k, n=n: k / n, lambda f, n=n: f * n))
            top.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            top.set_xlabel(f"Share of the {n} patches inserted", fontsize=8)
    for ax in axes[::ncols]:
        ax.set_ylabel("Top-1 accuracy (%)")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    seeded = curves.loc[curves["ranking"] == "random", "seed"].nunique() > 1
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(2 if ncols == 1 else 3, len(handles)),
               title="Bands: 95% CI" + ("; random: min–max over seeds" if seeded else ""), title_fontsize=8)
    return fig
