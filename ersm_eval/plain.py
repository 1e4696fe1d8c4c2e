"""Plain values: numpy numbers and arrays, tuples, paths and pandas' NA as JSON types (the one conversion
for summary.json, the feature cache's key and any JSON the evaluations write)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = ["plain"]


def plain(value: Any, fallback: Callable[[Any], Any] | None = None) -> Any:
    """``value`` with dicts (keys as text), lists and tuples (as lists) converted item by item.

    numpy booleans, integers, floats and arrays become Python ones, paths text and ``pd.NA``
    None. Any other value is returned as it is, or ``fallback(value)`` when given (e.g.
    ``str``, so that the result is always JSON).
    """
    if isinstance(value, dict):
        return {str(k): plain(v, fallback) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, fallback) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), fallback)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA:
        return None
    if fallback is None or value is None or isinstance(value, (bool, int, float, str)):
        return value
    return fallback(value)
