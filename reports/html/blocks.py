"""The parts a report page is made of (figures, tables, readings, sections) and their display strings.

Numbers are shown in the one format of :func:`ersm_eval.verdicts.format_number`; the helpers
here only choose its style for a kind of value.
"""

from __future__ import annotations

import base64
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from matplotlib.figure import Figure

from ersm_eval import verdicts
from reports.figures_style import RC, save_figure

__all__ = [
    "FigureBlock",
    "Figures",
    "Reading",
    "Section",
    "TableBlock",
    "has",
    "metric_value",
    "slug",
    "words",
]


@dataclass
class FigureBlock:
    """A figure as the template shows it."""

    caption: str
    data_uri: str  # data:image/png;base64,...
    png: str  # file names in the figures folder
    svg: str
    alt: str
    width: int  # display width in CSS pixels (the PNG at 100 px per inch, like print size)


@dataclass
class TableBlock:
    """A small table of display strings."""

    caption: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    text_columns: int = 1  # leading columns holding text (left-aligned); the rest are numbers


@dataclass
class Reading:
    """Numbers of one series in sentences (shown folded, behind the tables): a heading and sentences."""

    heading: str
    sentences: list[str]


@dataclass
class Section:
    """One section of the report."""

    id: str
    title: str
    intro: str = ""
    readings: list[Reading] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown before the figures, in warning style


def metric_value(metric: str, value: Any, low: Any = None, high: Any = None) -> str:
    """A metric with its interval: counts as integers, accuracies in %, other values with three decimals."""
    if metric.startswith("n_") and _finite(value) and float(value).is_integer() and not _finite(low):
        return verdicts.format_number(value, "count")  # a count, such as n_images
    style = "percent" if "accuracy" in metric or metric in ("pointing_game", "box_gt_known") else "plain"
    return verdicts.format_estimate(value, low, high, style)


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def words(name: str) -> str:
    """A column or ranking name for display: underscores as spaces."""
    return str(name).replace("_", " ")


def slug(text: str) -> str:
    """A name for files and HTML ids: lower-case letters, digits and hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def has(table: pd.DataFrame | None) -> bool:
    """True for a table with rows."""
    return table is not None and not table.empty


class Figures:
    """Saves figures (PNG + SVG) into one folder and embeds the PNG."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: set[str] = set()
        self.failures: list[str] = []  # figures that could not be drawn

    def add(self, make: Callable[[], Figure], name: str, caption: str, tight: bool = True) -> FigureBlock | None:
        """Draw and save one figure; a figure that fails is left out with a warning (None)."""
        base, n = name, 2
        while name in self.names:
            name, n = f"{base}-{n}", n + 1
        self.names.add(name)
        try:
            fig = make()
            png, svg = save_figure(fig, self.folder, name, tight=tight)
        except Exception as err:  # noqa: BLE001 - a figure never costs the report, let alone the tables
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            message = f"figure '{name}' could not be drawn ({type(err).__name__}{': ' + detail if detail else ''}); it is left out"
            self.failures.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None
        raw = png.read_bytes()
        width = int(int.from_bytes(raw[16:20], "big") * 100 / float(RC["savefig.dpi"]))  # PNG IHDR width
        data = base64.b64encode(raw).decode("ascii")
        return FigureBlock(caption, f"data:image/png;base64,{data}", png.name, svg.name, caption, width)
