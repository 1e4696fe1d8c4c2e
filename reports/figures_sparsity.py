"""Sparsity figures: keep-rate distribution, per-class keep rate, keep rate vs correctness."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.figures_style import new_figure, series_colours, series_of, styled

__all__ = ["plot_keep_by_correctness", "plot_keep_histogram", "plot_per_class_keep"]

CORRECT_COLOUR, WRONG_COLOUR = "#0072B2", "#D55E00"
_MAX_NAMED_CLASSES = 30


@styled
def plot_keep_histogram(histogram: pd.DataFrame) -> Figure:
    """Distribution of per-image keep rates (mean π of an image), as a share of images, one outline per series.

    Args:
        histogram: keep_histogram.csv rows, optionally stacked with a ``series`` column.
    """
    histogram = series_of(histogram)
    series = list(pd.unique(histogram["series"]))
    colours = series_colours(series)
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    for name in series:
        rows = histogram[histogram["series"] == name].sort_values("bin_low")
        edges = np.append(rows["bin_low"].to_numpy(), rows["bin_high"].to_numpy()[-1])
        counts = rows["count"].to_numpy(dtype=float)
        share = counts / counts.sum() * 100 if counts.sum() > 0 else counts
        ax.stairs(share, edges, color=colours[name], linewidth=1.6, label=name,
                  fill=len(series) == 1, alpha=0.85 if len(series) == 1 else 1.0)
        if len(series) == 1:
            ax.stairs(share, edges, color="#333333", linewidth=0.8)
    ax.axvline(0.5, color="#222222", linewidth=0.9, linestyle=(0, (1, 2)), zorder=4)
    ax.set_xlabel("Keep rate per image (mean π over its tokens)")
    ax.set_ylabel("Share of images (%)")
    ax.set_title("Distribution of per-image keep rates (dotted: 0.5)", loc="left")
    if len(series) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@styled
def plot_per_class_keep(per_class: pd.DataFrame) -> Figure:
    """Per series: classes sorted by mean keep rate, and class accuracy against keep rate.

    Args:
        per_class: per_class_keep.csv rows (series without a keep rate are left out).
    """
    per_class = series_of(per_class).dropna(subset=["mean_keep"])
    if per_class.empty:
        raise ValueError("per_class_keep has no keep rates to draw (models without a gate)")
    series = list(pd.unique(per_class["series"]))
    colours = series_colours(series)
    n_classes = per_class.groupby("series").size().max()
    named = n_classes <= _MAX_NAMED_CLASSES
    row_height = max(2.6, 0.17 * n_classes + 0.8) if named else 2.8
    fig = new_figure(8.0, row_height * len(series))
    axes = fig.subplots(len(series), 2, squeeze=False, width_ratios=[1.4, 1])
    for (ax_bar, ax_acc), name in zip(axes, series):
        rows = per_class[per_class["series"] == name].sort_values("mean_keep")
        colour = colours[name]
        if named:
            y = np.arange(len(rows))
            ax_bar.barh(y, rows["mean_keep"], color=colour, height=0.7)
            ax_bar.set_yticks(y, rows["class_name"].astype(str), fontsize=7)
            ax_bar.grid(axis="y", visible=False)
            ax_bar.set_xlabel("Mean keep probability")
        else:
            ax_bar.plot(np.arange(len(rows)), rows["mean_keep"], color=colour, marker="o", markersize=2, linewidth=1)
            ax_bar.set_xlabel(f"Classes sorted by keep rate ({len(rows)})")
            ax_bar.set_ylabel("Mean keep probability")
            for j in (0, len(rows) - 1):
                ax_bar.annotate(str(rows["class_name"].iloc[j]), (j, rows["mean_keep"].iloc[j]), fontsize=7,
                                xytext=(4 if j == 0 else -4, 0), textcoords="offset points",
                                ha="left" if j == 0 else "right", va="center")
        ax_bar.set_title(f"{name}: keep rate per class", loc="left")
        ax_acc.scatter(rows["mean_keep"], rows["accuracy"] * 100, s=np.clip(rows["n"], 4, 60), color=colour,
                       alpha=0.8, edgecolor="white", linewidth=0.4)
        ax_acc.set_xlabel("Mean keep probability")
        ax_acc.set_ylabel("Class accuracy (%)")
        ax_acc.set_title("accuracy vs keep (dot size: images)", loc="left", fontsize=8)
    return fig


@styled
def plot_keep_by_correctness(per_image: pd.DataFrame) -> Figure:
    """Per-image mean keep rate of correctly and wrongly classified images, per series.

    Args:
        per_image: per_image.csv rows (series without a keep rate are left out).
    """
    per_image = series_of(per_image).dropna(subset=["mean_keep"])
    if per_image.empty:
        raise ValueError("per_image has no keep rates to draw (models without a gate)")
    series = list(pd.unique(per_image["series"]))
    fig = new_figure(max(4.5, 1.6 * len(series) + 1.5), 3.4)
    ax = fig.subplots()
    for i, name in enumerate(series):
        rows = per_image[per_image["series"] == name]
        for j, (flag, colour, hatch) in enumerate(((True, CORRECT_COLOUR, ""), (False, WRONG_COLOUR, "//"))):
            values = rows.loc[rows["correct"] == flag, "mean_keep"].to_numpy()
            if len(values) == 0:
                continue
            x = i * 3 + j
            box = ax.boxplot(values, positions=[x], widths=0.7, patch_artist=True, showfliers=True,
                             medianprops={"color": "black"}, flierprops={"markersize": 2.5})
            for patch in box["boxes"]:
                patch.set(facecolor=colour, alpha=0.8, hatch=hatch, edgecolor="#333333")
            ax.plot([x], [values.mean()], marker="D", color="white", markeredgecolor="black", markersize=4, zorder=4)
            ax.annotate(f"n={len(values)}", (x, 0), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks([i * 3 + 0.5 for i in range(len(series))], series)
    ax.set_xlim(-0.8, len(series) * 3 - 1.2)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Mean keep probability per image")
    ax.set_title("Keep rate of correctly vs wrongly classified images (◆ mean)", loc="left")
    ax.legend(handles=[Patch(facecolor=CORRECT_COLOUR, edgecolor="#333333", label="correct"),
                       Patch(facecolor=WRONG_COLOUR, hatch="//", edgecolor="#333333", label="wrong")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
