"""Occlusion figure: accuracy against severity, one panel per pattern (docs/method.md §3).

One colour per checkpoint (series), one line style per occluder fill, 95% bands.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports.figures_style import new_figure, series_colours, series_of, styled

__all__ = ["FILL_STYLES", "plot_occlusion"]

FILL_STYLES = {"gray": "-", "black": "--", "noise": ":", "blur": "-."}
_SPARE = [(0, (5, 1, 1, 1)), (0, (1, 1)), (0, (6, 2))]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_PATTERN_ORDER = ["random_squares", "grid", "center", "object", "background"]


def _fill_style(fill: str, fills: list[str]) -> object:
    if fill in FILL_STYLES:
        return FILL_STYLES[fill]
    return _SPARE[[f for f in fills if f not in FILL_STYLES].index(fill) % len(_SPARE)]


@styled
def plot_occlusion(occlusion: pd.DataFrame) -> Figure:
    """Accuracy (%) against occlusion severity; a panel per pattern.

    Args:
        occlusion: occlusion.csv rows, optionally stacked with a ``series`` column.
    """
    occlusion = series_of(occlusion)
    series = list(pd.unique(occlusion["series"]))
    fills = list(pd.unique(occlusion["fill"]))
    found = list(pd.unique(occlusion["pattern"]))
    patterns = [p for p in _PATTERN_ORDER if p in found] + [p for p in found if p not in _PATTERN_ORDER]
    colours = series_colours(series)
    ncols = min(3, len(patterns))
    nrows = math.ceil(len(patterns) / ncols)
    fig = new_figure(max(6.6, 3.4 * ncols), 3.0 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax, pattern in zip(axes, patterns):
        panel = occlusion[occlusion["pattern"] == pattern]
        for s, name in enumerate(series):
            for fill in fills:
                rows = panel[(panel["series"] == name) & (panel["fill"] == fill)].sort_values("severity")
                if rows.empty:
                    continue
                x = rows["severity"].to_numpy()
                ax.fill_between(x, rows["ci_low"] * 100, rows["ci_high"] * 100, color=colours[name], alpha=0.12, linewidth=0)
                ax.plot(x, rows["accuracy"] * 100, color=colours[name], linestyle=_fill_style(fill, fills),
                        marker=_MARKERS[s % len(_MARKERS)], markersize=3.5)
        ax.set_title(pattern.replace("_", " "), loc="left")
        ax.set_xlabel("Severity")
    for ax in axes[::ncols]:
        ax.set_ylabel("Top-1 accuracy (%)")
    for ax in axes[len(patterns):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[n], marker=_MARKERS[i % len(_MARKERS)], markersize=4) for i, n in enumerate(series)]
    labels = list(series)
    if len(fills) > 1 or len(series) == 1:
        handles += [Line2D([], [], color="#333333", linestyle=_fill_style(f, fills)) for f in fills]
        labels += [f"fill: {f}" for f in fills]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), title="Bands: 95% CI", title_fontsize=8)
    return fig
