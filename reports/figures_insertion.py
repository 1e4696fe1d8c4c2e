"""Insertion figure: accuracy as the original pixels come back, most important tokens first.

Drawn in the deletion curves' style from insertion_curves.csv alone: one panel per series,
one solid line per ranking (its MoRF order: most important first) with its 95% band, and
random's mean over seeds with the min–max spread across seeds. Higher is better here.
"""

from __future__ import annotations


import pandas as pd
from matplotlib.figure import Figure

from ersm_eval import verdicts
from reports.figures_deletion import finish_panels, n_tokens, random_band, share_axis
from reports.figures_style import ranking_order, ranking_style, series_panels, styled

__all__ = ["plot_insertion_curves"]


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
        share_axis(ax, n_tokens(panel, "fraction_inserted"), "inserted")
    return finish_panels(fig, axes, len(series), ncols, handles, curves)
