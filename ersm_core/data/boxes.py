"""The box around an object mask: the one box-from-mask helper of the project.

Datasets derive a box from a mask when they have no box of their own (Pets'
trimaps, the synthetic shapes), and localization takes the box of a thresholded
map and of an object mask with no recorded box, all with :func:`bounding_box`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bounding_box"]


def bounding_box(binary: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) around the True (non-zero) pixels of a 2-D mask, ends exclusive; None if empty.

    A single pixel at row r, column c gives (c, r, c + 1, r + 1), so the box's area
    is the pixel count of a filled rectangle.
    """
    binary = np.asarray(binary, dtype=bool)
    if binary.ndim != 2:
        raise ValueError(f"bounding_box takes a 2-D mask, got shape {binary.shape}")
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    if len(rows) == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)
