"""Deletion figures: accuracy against patches removed, and the per-ranking summary bars.

The curves are the paper's Fig. 3/4 (ERSM, "robustness curve"): top-1 accuracy as
tokens are deleted in both orders of each ranking (least and most important first), each with its 95% band,
random drawn as the mean over seeds with the min–max spread across seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ersm_eval import verdicts
from reports.figures_style import new_figure, ranking_order, ranking_style, series_colours, series_of, series_panels, styled

__all__ = ["n_tokens", "plot_deletion_curves", "plot_deletion_summary", "random_band", "share_axis", "finish_panels"]

_HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "++", "--"]


def n_tokens(curve: pd.DataFrame, fraction: str = "fraction_removed") -> int | None:
    """Number of tokens N implied by ``k / fraction_removed`` (or another ``fraction`` column; None when it
    cannot be told)."""
    rows = curve[(curve["k"] > 0) & (curve[fraction] > 0)]
    if rows.empty:
        return None
    ratios = (rows["k"] / rows[fraction]).to_numpy(float)
    n = float(np.median(ratios))
    if not math.isfinite(n) or n <= 0 or not np.allclose(ratios, n, rtol=1e-3):
        return None
    return int(round(n))


def random_band(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, int]:
    """Mean, low and high of the random ranking's accuracy per k, and the number of seeds.

    With several seeds the band is their min–max spread; with one seed (or only a
    seed-pooled row, seed −1) it is that curve's own 95% interval.
    """
    seeded = rows[rows["seed"] >= 0]
    if seeded["seed"].nunique() > 1:
        per_seed = seeded.pivot_table(index="k", columns="seed", values="accuracy", aggfunc="mean")
        return per_seed.mean(axis=1), per_seed.min(axis=1), per_seed.max(axis=1), per_seed.shape[1]
    one = (seeded if not seeded.empty else rows).groupby("k")[["accuracy", "ci_low", "ci_high"]].mean()
    return one["accuracy"], one["ci_low"], one["ci_high"], max(1, seeded["seed"].nunique())


def _k0_accuracy(rows: pd.DataFrame) -> float | None:
    at0 = rows.loc[rows["k"] == 0, "accuracy"]
    return float(at0.median()) if len(at0) else None


_ORDER_LABELS = {"lerf": "least important first (LeRF, solid)", "morf": "most important first (MoRF, dashed)"}


@styled
def plot_deletion_curves(curves: pd.DataFrame, no_information: frozenset[str] | set[str] = frozenset()) -> Figure:
    """Accuracy (%) against patches removed: one panel per series, two lines per ranking (LeRF solid,
    MoRF dashed) and random's mean with its band.

    Args:
        curves: deletion_curves.csv rows, optionally stacked over runs with a ``series`` column.
        no_information: series whose model's accuracy interval contains chance; their panels are faded and marked as
            carrying no information.

    Returns:
        The figure (legend below the panels, so it never covers a curve).
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
                label = f"Random (mean of {seeds} seeds)" if seeds > 1 else "Random"
                x = mean.index.to_numpy()
                y, lo, hi = mean.to_numpy(), low.to_numpy(), high.to_numpy()
                ax.fill_between(x, lo * 100, hi * 100, color="#888888", alpha=0.3, linewidth=0)
                (line,) = ax.plot(
                    x, y * 100, color=style.colour, linestyle=style.linestyle, marker=style.marker or None,
                    markevery=max(1, len(x) // 8), markersize=4, label=label, zorder=3,
                )
                handles.setdefault(label, line)
                continue
            orders = rows["order"] if "order" in rows.columns else pd.Series("lerf", index=rows.index)
            for order in ("lerf", "morf"):
                part = rows[orders == order].groupby("k")[["accuracy", "ci_low", "ci_high"]].mean()
                if part.empty:
                    continue
                x = part.index.to_numpy()
                y, lo, hi = part["accuracy"].to_numpy(), part["ci_low"].to_numpy(), part["ci_high"].to_numpy()
                label = f"{style.label}, {_ORDER_LABELS[order]}"
                ax.fill_between(x, lo * 100, hi * 100, color=style.colour, alpha=0.14, linewidth=0)
                (line,) = ax.plot(
                    x, y * 100, color=style.colour, linestyle="-" if order == "lerf" else (0, (4, 2)),
                    marker=style.marker or None, markevery=max(1, len(x) // 8), markersize=4, label=label, zorder=3,
                )
                handles.setdefault(label, line)
        acc0 = _k0_accuracy(panel)
        title = name
        if acc0 is not None:
            level = ax.axhline(acc0 * 100, color="#555555", linewidth=0.9, linestyle=(0, (1, 2)), zorder=2)
            handles.setdefault("Accuracy with no deletion (k = 0)", level)
            title = f"{name}: {acc0 * 100:.1f}% at k = 0"
        if name in no_information:
            title += f" ({verdicts.AT_CHANCE})"
            for artist in [*ax.lines, *ax.collections]:
                artist.set_alpha(0.25)
            ax.text(0.5, 0.5, f"{verdicts.AT_CHANCE}:\nthese curves carry no information", transform=ax.transAxes, ha="center",
                    va="center", fontsize=10, color="#8a3600", zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "#8a3600", "boxstyle": "round,pad=0.4"})
        ax.set_title(title, loc="left")
        ax.set_xlabel("Patches removed (k)")
        ax.set_xlim(panel["k"].min(), panel["k"].max())
        share_axis(ax, n_tokens(panel), "removed")
    return finish_panels(fig, axes, len(series), ncols, handles, curves)


def share_axis(ax, n: int | None, verb: str) -> None:
    """A top axis with the share of the ``n`` patches ``verb`` (removed, inserted); none when N is unknown."""
    if n:
        top = ax.secondary_xaxis("top", functions=(lambda k, n=n: k / n, lambda f, n=n: f * n))
        top.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        top.set_xlabel(f"Share of the {n} patches {verb}", fontsize=8)


def finish_panels(fig: Figure, axes, n_series: int, ncols: int, handles: dict[str, object], curves: pd.DataFrame) -> Figure:
    """The accuracy label of each row, the unused panels hidden and one legend below them."""
    for ax in axes[::ncols]:
        ax.set_ylabel("Top-1 accuracy (%)")
    for ax in axes[n_series:]:
        ax.set_visible(False)
    seeded = curves.loc[curves["ranking"] == "random", "seed"].nunique() > 1
    fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncols=min(2 if ncols == 1 else 3, len(handles)),
        title="Bands: 95% CI" + ("; random: min–max over seeds" if seeded else ""), title_fontsize=8,
    )
    return fig


@styled
def plot_deletion_summary(summary: pd.DataFrame) -> Figure:
    """Bars of the deletion AUC of each ranking's LeRF order (least important first; random: its one
    order) and, where measured, the symmetric gain (LeRF area − MoRF area) with its 95% CI.

    The largest per-step gap is not drawn: picked at the best k it flatters any ranking; the
    report shows it only as a secondary number beside the smallest gap.

    Args:
        summary: deletion_summary.csv rows, optionally stacked with a ``series`` column.
    """
    summary = series_of(summary)
    series = list(pd.unique(summary["series"]))
    rankings = ranking_order(summary["ranking"])
    has_diff = "sg_ci_low" in summary.columns
    diff_rankings = [r for r in rankings if r != "random" and has_diff
                     and summary.loc[summary["ranking"] == r, "sg_ci_low"].notna().any()]
    colours = series_colours(series)
    width = 0.8 / len(series)
    fig = new_figure(min(11.0, max(6.6, 0.8 * len(rankings) * max(1, len(series) / 1.5) + 0.7 * len(diff_rankings) + 1.5)), 3.6)
    if diff_rankings:
        ax_auc, ax_diff = fig.subplots(1, 2, width_ratios=[max(1, len(rankings)), max(1, len(diff_rankings))])
    else:
        ax_auc, ax_diff = fig.subplots(1, 1), None
    for i, name in enumerate(series):
        rows = summary[summary["series"] == name].set_index("ranking")
        offset = (i - (len(series) - 1) / 2) * width
        x = np.arange(len(rankings)) + offset
        auc = np.array([rows["auc_lerf"].get(r, np.nan) for r in rankings], dtype=float)
        bar_colours = [ranking_style(r).colour for r in rankings] if len(series) == 1 else colours[name]
        bars = ax_auc.bar(x, auc, width * 0.92, color=bar_colours, hatch=_HATCHES[i % len(_HATCHES)],
                          edgecolor="white" if len(series) == 1 else "#333333", linewidth=0.4, label=name)
        if len(series) * len(rankings) <= 16:
            ax_auc.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        if ax_diff is None:
            continue
        xd = np.arange(len(diff_rankings)) + offset
        diff = np.array([rows["sg"].get(r, np.nan) for r in diff_rankings], dtype=float)
        low = np.array([rows["sg_ci_low"].get(r, np.nan) for r in diff_rankings], dtype=float)
        high = np.array([rows["sg_ci_high"].get(r, np.nan) for r in diff_rankings], dtype=float)
        err = np.nan_to_num(np.vstack([np.clip(diff - low, 0, None), np.clip(high - diff, 0, None)]))
        point_colours = [ranking_style(r).colour for r in diff_rankings] if len(series) == 1 else [colours[name]] * len(diff_rankings)
        for xx, yy, e0, e1, c in zip(xd, diff, err[0], err[1], point_colours):
            ax_diff.errorbar(xx, yy, yerr=[[e0], [e1]], fmt="o", color=c, ecolor=c, capsize=3, markersize=5)
    ax_auc.set_xticks(np.arange(len(rankings)), [r.replace("_", "\n") for r in rankings])
    ax_auc.set_ylabel("Deletion AUC (normalized)")
    ax_auc.set_title("Area under the curve, least important first (LeRF)", loc="left")
    ax_auc.set_ylim(0, max(1.0, float(np.nanmax(summary["auc_lerf"])) * 1.1) if summary["auc_lerf"].notna().any() else 1.0)
    if ax_diff is not None:
        ax_diff.axhline(0, color="#555555", linewidth=0.8)
        ax_diff.set_xticks(np.arange(len(diff_rankings)), [r.replace("_", "\n") for r in diff_rankings])
        ax_diff.set_xlim(-0.6, max(0.6, len(diff_rankings) - 0.4))
        ax_diff.set_ylabel("symmetric gain: AUC(LeRF) − AUC(MoRF)")
        ax_diff.set_title("Least minus most important first (95% CI)", loc="left")
        ax_diff.margins(y=0.12)
    if len(series) > 1:
        handles = [ax_auc.containers[i] for i in range(len(series))]
        fig.legend(handles, series, loc="outside lower center", ncols=min(4, len(series)))
    return fig
