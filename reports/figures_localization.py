"""Localization figure: how well the keep / energy / CAM maps find the object (SPEC §4).

Box accuracy follows the protocol of ``reference/tdam-supplement.txt`` §1.2; the
values come from sparsity_summary.csv rows whose ``map`` is keep, energy or cam.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.figures_style import new_figure, series_of, styled
from reports.tables import LOCALIZATION_METRICS, MAP_NAMES, is_localization_metric

__all__ = ["MAP_COLOURS", "localization_rows", "plot_localization"]

MAP_COLOURS = {"keep": "#0072B2", "energy": "#D55E00", "cam": "#009E73"}
_MAP_HATCHES = {"keep": "", "energy": "//", "cam": ".."}


def localization_rows(sparsity_summary: pd.DataFrame) -> pd.DataFrame:
    """The localization rows of sparsity_summary (map keep/energy/cam, object-based metric)."""
    rows = series_of(sparsity_summary)
    return rows[rows["map"].isin(MAP_NAMES) & rows["metric"].map(is_localization_metric)]


@styled
def plot_localization(sparsity_summary: pd.DataFrame) -> Figure:
    """Grouped bars (metric × map) with 95% CIs, one panel per series.

    Args:
        sparsity_summary: sparsity_summary.csv rows, optionally stacked with a ``series`` column.
    """
    rows = localization_rows(sparsity_summary)
    if rows.empty:
        raise ValueError("sparsity_summary has no localization rows (no object masks or boxes?)")
    series = list(pd.unique(rows["series"]))
    found = list(pd.unique(rows["metric"]))
    metrics = [m for m in LOCALIZATION_METRICS if m in found] + [m for m in found if m not in LOCALIZATION_METRICS]
    maps = [m for m in MAP_NAMES if m in set(rows["map"])]
    width = 0.8 / len(maps)
    fig = new_figure(max(4.8, 1.0 + 1.3 * len(metrics)) * min(2, len(series)), 3.2 * -(-len(series) // 2) + 0.5)
    axes = fig.subplots(-(-len(series) // 2), min(2, len(series)), squeeze=False, sharey=True).ravel()
    for ax, name in zip(axes, series):
        panel = rows[rows["series"] == name]
        for j, map_name in enumerate(maps):
            part = panel[panel["map"] == map_name].groupby("metric")[["value", "ci_low", "ci_high"]].first()
            value = np.array([part["value"].get(m, np.nan) for m in metrics])
            low = np.array([part["ci_low"].get(m, np.nan) for m in metrics])
            high = np.array([part["ci_high"].get(m, np.nan) for m in metrics])
            err = np.nan_to_num(np.vstack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)]))
            x = np.arange(len(metrics)) + (j - (len(maps) - 1) / 2) * width
            ax.bar(x, value, width * 0.92, yerr=err, capsize=2.5, color=MAP_COLOURS[map_name],
                   hatch=_MAP_HATCHES[map_name], edgecolor="#333333", linewidth=0.4, label=f"{map_name} map",
                   error_kw={"elinewidth": 0.8})
        ax.set_xticks(np.arange(len(metrics)), [textwrap.fill(m.replace("_", " "), 12) for m in metrics])
        ax.set_title(name, loc="left")
        ax.set_xlim(-0.7, len(metrics) - 0.3)
        ax.set_ylim(0, 1.0)
    axes[0].set_ylabel("Value (95% CI)")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=MAP_COLOURS[m], hatch=_MAP_HATCHES[m], edgecolor="#333333", label=f"{m} map") for m in maps]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(maps))
    return fig
