"""One figure style for every report figure: colour-blind-safe colours, print sizes, saving.

Colours are the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"),
which stays distinguishable under the common colour-vision deficiencies; every
ranking also has its own line style and marker so curves survive a grey-scale
print. Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas,
never through ``pyplot``, so no display and no global backend switch is needed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "OKABE_ITO",
    "RANKING_STYLES",
    "RC",
    "RankingStyle",
    "new_figure",
    "ranking_order",
    "ranking_style",
    "save_figure",
    "series_colours",
    "series_of",
    "series_panels",
    "styled",
]

# Okabe–Ito, ordered so that the first few are the most distinct on white paper
# (yellow last: it is faint in print).
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
    "legend.frameon": False,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",  # never clip a long legend or label
    "savefig.pad_inches": 0.05,
    "svg.hashsalt": "ersm-eval",  # fixed ids: the same figure gives the same SVG bytes
    "svg.fonttype": "path",
    # labels, class names and titles are user strings: "$", "_" and "^" are drawn as they are,
    # never read as math markup (the figures use no math text of their own)
    "text.parse_math": False,
}


@dataclass(frozen=True)
class RankingStyle:
    """How one deletion ranking is drawn in every figure."""

    label: str  # legend text, in plain words
    colour: str  # Okabe–Ito colour
    linestyle: str  # distinct per ranking for grey-scale print
    marker: str  # drawn sparsely along the curve


RANKING_STYLES: dict[str, RankingStyle] = {
    "energy": RankingStyle("Energy (highest first)", "#D55E00", "-", "o"),
    "unary": RankingStyle("Unary u (highest first)", "#E69F00", "--", "s"),
    "random": RankingStyle("Random", "#000000", "-", ""),
    "magnitude": RankingStyle("Magnitude (lowest first)", "#0072B2", "-.", "^"),
    "magnitude_desc": RankingStyle("Magnitude (highest first)", "#56B4E9", "-.", "v"),
    "cam": RankingStyle("CAM (lowest first)", "#009E73", "--", "D"),
    "energy_reversed": RankingStyle("Energy reversed (lowest first)", "#CC79A7", ":", "x"),
    "center": RankingStyle("Centre first (position only)", "#777777", (0, (4, 2, 1, 2)), "+"),
    "border": RankingStyle("Border first (position only)", "#BBBBBB", (0, (4, 2, 1, 2)), "1"),
}

_SPARE_STYLES = [("#999999", (0, (3, 1, 1, 1)), "P"), ("#F0E442", (0, (5, 2)), "*"), ("#7F3C8D", (0, (1, 1)), "h")]


def ranking_style(name: str) -> RankingStyle:
    """The style of ranking ``name``; rankings not known here get a stable spare style."""
    if name in RANKING_STYLES:
        return RANKING_STYLES[name]
    colour, linestyle, marker = _SPARE_STYLES[sum(map(ord, name)) % len(_SPARE_STYLES)]
    return RankingStyle(name.replace("_", " "), colour, linestyle, marker)


def ranking_order(names) -> list[str]:
    """Rankings in the canonical order (known ones first, then the rest alphabetically)."""
    names = list(dict.fromkeys(names))
    known = [n for n in RANKING_STYLES if n in names]
    return known + sorted(n for n in names if n not in RANKING_STYLES)


def series_colours(labels: list[str]) -> dict[str, str]:
    """One Okabe–Ito colour per series label, in the given order (cycling after eight)."""
    return {label: OKABE_ITO[i % len(OKABE_ITO)] for i, label in enumerate(labels)}


def series_of(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``series`` column (the checkpoint when the table has no series yet)."""
    if "series" in table.columns:
        return table
    return table.assign(series=table["checkpoint"].astype(str))


def series_panels(curves: pd.DataFrame) -> tuple[pd.DataFrame, list, Figure, np.ndarray, int]:
    """Curves drawn one panel per series (two columns from two series on, one y axis): the curves with a
    ``series`` column, the series in order, the figure, its axes (flat) and the number of columns."""
    curves = series_of(curves)
    series = list(pd.unique(curves["series"]))
    ncols = 1 if len(series) == 1 else 2
    nrows = math.ceil(len(series) / ncols)
    fig = new_figure(6.6 if ncols == 1 else 10.5, 3.6 * nrows + 0.9)
    return curves, series, fig, fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel(), ncols


F = TypeVar("F", bound=Callable)


def styled(func: F) -> F:
    """Run a plotting function inside the report style (rc settings apply at draw time)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on the Agg canvas (no pyplot, no display)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: str | Path, name: str, tight: bool = True) -> tuple[Path, Path]:
    """Write ``name.png`` and ``name.svg`` into ``out_dir`` with no date or version stamp.

    Args:
        fig: the figure.
        out_dir: folder, created if needed.
        name: file name without suffix.
        tight: crop to the drawn content (off for figures laid out by hand, which is faster).
            The figure's layout is frozen by the first draw.

    Returns:
        The PNG and SVG paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    with mpl.rc_context(RC):
        bbox = None
        if tight:
            # lay out and measure once, then freeze the layout: both files get the same
            # crop and neither save repeats the layout passes
            fig.canvas.draw()
            bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(RC["savefig.pad_inches"])
            fig.set_layout_engine("none")
        fig.savefig(png, format="png", metadata={"Software": None}, bbox_inches=bbox)
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches=bbox)
    return png, svg
