"""Per-image records: the numpy arrays every evaluator keeps, image axis first.

An evaluator's ``records()`` returns ``{name: array}`` with one row per image and an
``index`` array of dataset indices; :func:`ersm_eval.distributed.gather_records`
concatenates the records of several processes, and ``compute`` reads them sorted by
index. This module is the one place that sorts them, joins an evaluator's batches and
says that there are none.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ersm_core.errors import DatasetError

__all__ = ["sort_records", "concat_records", "no_images_error"]


def no_images_error(evaluation: str) -> DatasetError:
    """The one error for an evaluation that saw no images (raised by every evaluator alike)."""
    return DatasetError(f"no images were evaluated, so there is nothing to compute for {evaluation}")


def sort_records(records: dict[str, np.ndarray], evaluation: str = "the evaluation") -> dict[str, np.ndarray]:
    """Records sorted by dataset index (a stable sort); a repeated index raises (an image counted twice).

    Args:
        records: arrays with the image axis first, among them ``index``.
        evaluation: the evaluation's name, for the error message.

    Raises:
        ValueError: an index occurs more than once.
    """
    index = np.asarray(records["index"])
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    if len(sorted_index) > 1 and np.any(sorted_index[1:] == sorted_index[:-1]):
        dup = sorted_index[1:][sorted_index[1:] == sorted_index[:-1]][:5].tolist()
        raise ValueError(f"{evaluation} records hold dataset indices more than once (first: {dup})")
    return {k: np.asarray(v)[order] for k, v in records.items()}


def concat_records(parts: Sequence[dict[str, np.ndarray]], evaluation: str) -> dict[str, np.ndarray]:
    """The records of an evaluator's batches joined along the image axis, in update order.

    Raises:
        DatasetError: no batch was added (:func:`no_images_error`).
    """
    if not parts:
        raise no_images_error(evaluation)
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
