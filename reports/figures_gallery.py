"""Mask galleries from maps.npz: image | keep map | image × upsampled keep map ("faded" view).

The examples are chosen from per_image.csv: a plain gallery, failures by kind
(``focused``, ``distracted``, ``high_confidence``) and improvements over a baseline
run (baseline wrong, this model right; the ERSM paper's Fig. 5/6). The images are
the transformed inputs the sparsity run saved, so no model is ever loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.figures_style import styled
from reports.tables import Run

__all__ = [
    "FAILURE_KINDS",
    "Example",
    "display_map",
    "failure_examples",
    "improvement_examples",
    "plain_examples",
    "plot_mask_gallery",
    "upsample_bilinear",
]

FAILURE_KINDS = {
    "focused": "focused on the object but still wrong",
    "distracted": "kept the background, missed the object",
    "high_confidence": "wrong with high confidence",
}


@dataclass(frozen=True)
class Example:
    """One gallery row: where the image sits in maps.npz and the caption under it."""

    position: int  # row in the maps.npz arrays
    caption: str  # true / predicted labels, in words


def upsample_bilinear(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of [..., h, w] maps to [..., size, size].

    Same sampling as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``, written in numpy so the report needs no torch.
    """
    maps = np.asarray(maps, dtype=np.float64)

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size) + 0.5) * (n_in / size) - 0.5, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, wy = axis(maps.shape[-2])
    x0, x1, wx = axis(maps.shape[-1])
    rows = maps[..., y0, :] * (1 - wy)[:, None] + maps[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def display_map(maps: dict[str, np.ndarray], position: int) -> tuple[np.ndarray, str, str] | None:
    """The map shown for one image, scaled to [0, 1], with its title and the faded view's title.

    keep is shown as is; without a gate the CAM (positive part, scaled by its max)
    is shown instead, else 1 − scaled energy. None when maps.npz holds no map.
    """
    if "keep" in maps:
        return np.clip(maps["keep"][position].astype(float), 0, 1), "keep π", "image × keep"
    if "cam" in maps:
        cam = np.clip(maps["cam"][position].astype(float), 0, None)
        top = cam.max()
        return (cam / top if top > 0 else cam), "CAM (scaled)", "image × CAM"
    if "energy" in maps:
        energy = maps["energy"][position].astype(float)
        span = energy.max() - energy.min()
        scaled = (energy - energy.min()) / span if span > 0 else np.zeros_like(energy)
        return 1 - scaled, "1 − energy (scaled)", "image × (1 − energy)"
    return None


def _outline(ax, mask: np.ndarray) -> None:
    if mask.min() < 0.5 < mask.max():
        ax.contour(mask, levels=[0.5], colors="black", linewidths=2.0)
        ax.contour(mask, levels=[0.5], colors="white", linewidths=0.9, linestyles="--")


@styled
def plot_mask_gallery(maps: dict[str, np.ndarray], examples: list[Example], title: str | None = None) -> Figure:
    """A grid of examples, each image | map | faded view, object outline where a mask exists.

    Args:
        maps: the arrays of maps.npz (see :data:`reports.tables.MAP_KEYS`).
        examples: rows to show, with their captions.
        title: heading drawn above the grid.
    """
    if not examples:
        raise ValueError("a gallery needs at least one example")
    shown = display_map(maps, examples[0].position)
    panels = 3 if shown is not None else 1
    per_row = (2 if len(examples) > 2 else 1) if panels == 3 else min(4, len(examples))
    nrows = math.ceil(len(examples) / per_row)
    # fixed layout in inches (constrained layout is slow on many image axes)
    side, gap, cell_gap, caption, label = 1.45, 0.07, 0.3, 0.3, 0.2
    cell_w = panels * side + (panels - 1) * gap
    cell_h = caption + label + side
    top = 0.4 if title else 0.05
    width = per_row * cell_w + (per_row - 1) * cell_gap + 0.2
    height = top + nrows * cell_h + (nrows - 1) * 0.15 + 0.1
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    size = maps["image"].shape[1]
    for i, example in enumerate(examples):
        row, col = divmod(i, per_row)
        x0 = 0.1 + col * (cell_w + cell_gap)
        y_top = height - top - row * (cell_h + 0.15)
        fig.text((x0 + cell_w / 2) / width, y_top / height, example.caption, ha="center", va="top", fontsize=7.5)
        axes = [fig.add_axes(((x0 + j * (side + gap)) / width, (y_top - cell_h) / height, side / width, side / height))
                for j in range(panels)]
        image = maps["image"][example.position]
        mask = maps["mask"][example.position] if "mask" in maps else None
        axes[0].imshow(image)
        axes[0].set_title("image", fontsize=7, pad=2)
        if shown is not None:
            values, map_title, faded_title = display_map(maps, example.position)
            axes[1].imshow(values, vmin=0, vmax=1, cmap="viridis", interpolation="nearest",
                           extent=(-0.5, size - 0.5, size - 0.5, -0.5))
            axes[1].set_title(map_title, fontsize=7, pad=2)
            weights = upsample_bilinear(values, size)
            axes[2].imshow(np.clip(image.astype(float) * weights[..., None], 0, 255).astype(np.uint8))
            axes[2].set_title(faded_title, fontsize=7, pad=2)
        for ax in axes:
            ax.set_axis_off()
            ax.set_xticks([])
            ax.set_yticks([])
            if mask is not None:
                _outline(ax, mask)
    if title:
        note = "  (maps: dark = dropped, yellow = kept; dashed outline = object)" if shown is not None else ""
        fig.text(0.1 / width, 1 - 0.08 / height, title + note, ha="left", va="top", fontsize=9)
    return fig


def _positions(run: Run) -> dict[int, int]:
    return {int(index): i for i, index in enumerate(run.maps["index"])} if run.maps is not None else {}


def _per_image(run: Run) -> pd.DataFrame:
    """per_image rows of the run's first checkpoint (maps.npz holds one model's maps)."""
    table = run.table("per_image.csv")
    if table is None:
        return pd.DataFrame(columns=["index"])
    return table[table["checkpoint"] == table["checkpoint"].iloc[0]]


def _caption(run: Run, position: int, confidence: float | None = None) -> str:
    maps = run.maps
    label, prediction = int(maps["label"][position]), int(maps["prediction"][position])
    verdict = "right" if label == prediction else "wrong"
    sure = f", {confidence:.0%}" if confidence is not None and np.isfinite(confidence) else ""
    return (f"#{int(maps['index'][position])}  true: {run.class_name(label)}\n"
            f"pred: {run.class_name(prediction)} ({verdict}{sure})")


def plain_examples(run: Run, limit: int = 6) -> list[Example]:
    """The first ``limit`` images of maps.npz, in the order the sparsity run saved them."""
    if run.maps is None:
        return []
    confidence = _per_image(run).set_index("index")["confidence"] if run.table("per_image.csv") is not None else pd.Series(dtype=float)
    out = []
    for position in range(min(limit, len(run.maps["index"]))):
        index = int(run.maps["index"][position])
        out.append(Example(position, _caption(run, position, confidence.get(index))))
    return out


def failure_examples(run: Run, kind: str, limit: int = 6) -> list[Example]:
    """Images whose per_image ``failure`` is ``kind`` and that maps.npz holds, most confident first."""
    positions = _positions(run)
    table = _per_image(run)
    if not positions or "failure" not in table:
        return []
    rows = table[(table["failure"] == kind) & table["index"].astype(int).isin(positions)]
    rows = rows.sort_values(["confidence", "index"], ascending=[False, True]).head(limit)
    return [Example(positions[int(r["index"])], _caption(run, positions[int(r["index"])], r["confidence"]))
            for r in rows.to_dict("records")]


def improvement_examples(run: Run, baseline: Run, limit: int = 6) -> list[Example]:
    """Images the baseline gets wrong and ``run`` gets right (same dataset index and label)."""
    positions = _positions(run)
    ours, theirs = _per_image(run), _per_image(baseline)
    if not positions or ours.empty or theirs.empty:
        return []
    joined = ours.merge(theirs, on="index", suffixes=("", "_base"))
    joined = joined[(joined["label"] == joined["label_base"]) & joined["correct"] & ~joined["correct_base"].astype(bool)]
    joined = joined[joined["index"].astype(int).isin(positions)].sort_values(
        ["confidence_base", "index"], ascending=[False, True]).head(limit)
    out = []
    for r in joined.to_dict("records"):
        position = positions[int(r["index"])]
        caption = (f"#{int(r['index'])}  true: {run.class_name(int(r['label']))}\n"
                   f"{baseline.label}: {baseline.class_name(int(r['prediction_base']))} (wrong) · "
                   f"{run.label}: {run.class_name(int(r['prediction']))} (right)")
        out.append(Example(position, caption))
    return out
