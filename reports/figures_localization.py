"""Localization figure: how well the keep / energy / CAM maps find the object.

The values come from localization.csv, where every metric is also measured for two maps
that know nothing about the image (``uniform`` and ``center``), drawn beside the real maps
in grey.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.figures_style import new_figure, series_of, styled
from reports.tables import MAP_NAMES

__all__ = ["BASELINE_MAPS", "MAP_COLOURS", "plot_localization"]

MAP_COLOURS = {"keep": "#0072B2", "energy": "#D55E00", "cam": "#009E73", "uniform": "#BBBBBB", "center": "#777777"}
_MAP_HATCHES = {"keep": "", "energy": "//", "cam": "..", "uniform": "", "center": "xx"}
BASELINE_MAPS = ("uniform", "center")  # the trivial maps of localization.csv


@styled
def plot_localization(localization: pd.DataFrame) -> Figure:
    """Grouped bars (metric × map) with 95% CIs, the uniform and centre baselines in grey.

    Args:
        localization: localization.csv rows, optionally stacked with a ``series`` column.
    """
    rows = series_of(localization)
    if rows.empty:
        raise ValueError("localization.csv has no rows")
    return _grouped_bars(rows)


def _grouped_bars(rows: pd.DataFrame) -> Figure:
    """One panel per series; per metric a bar per map (real maps first, then the baselines)."""
    series = list(pd.unique(rows["series"]))
    names = list(pd.unique(rows["metric"]))
    maps = [m for m in (*MAP_NAMES, *BASELINE_MAPS) if m in set(rows["map"])]
    maps += [m for m in pd.unique(rows["map"]) if m not in maps]
    width = 0.8 / len(maps)
    ncols = 2 if len(series) > 1 and len(names) <= 3 else 1
    nrows = -(-len(series) // ncols)
    fig = new_figure(min(11.0, max(4.8, 1.2 + 0.95 * len(names) * (0.6 + 0.2 * len(maps)))) * ncols, 2.9 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, label in zip(axes, series):
        panel = rows[rows["series"] == label]
        for j, map_name in enumerate(maps):
            part = panel[panel["map"] == map_name].groupby("metric")[["value", "ci_low", "ci_high"]].first()
            value = np.array([part["value"].get(n, np.nan) for n in names], dtype=float)
            low = np.array([part["ci_low"].get(n, np.nan) for n in names], dtype=float)
            high = np.array([part["ci_high"].get(n, np.nan) for n in names], dtype=float)
            err = np.nan_to_num(np.vstack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)]))
            x = np.arange(len(names)) + (j - (len(maps) - 1) / 2) * width
            ax.bar(x, value, width * 0.92, yerr=err, capsize=2.5, color=MAP_COLOURS.get(map_name, "#999999"),
                   hatch=_MAP_HATCHES.get(map_name, ""), edgecolor="#333333", linewidth=0.4, error_kw={"elinewidth": 0.8})
        ax.set_xticks(np.arange(len(names)), [textwrap.fill(n.replace("_", " "), 12) for n in names], fontsize=7)
        ax.set_xlim(-0.7, len(names) - 0.3)
        ax.set_title(label, loc="left")
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("Value (95% CI)")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=MAP_COLOURS.get(m, "#999999"), hatch=_MAP_HATCHES.get(m, ""), edgecolor="#333333",
                     label=f"{m} map" + (" (baseline)" if m in BASELINE_MAPS else "")) for m in maps]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(maps)))
    return fig
