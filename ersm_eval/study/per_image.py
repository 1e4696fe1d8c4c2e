"""The per-image values of a study's metrics, from one checkpoint's evaluation records.

:func:`per_image_values` is the one place where a checkpoint's deletion and sparsity
records become the per-image arrays that :func:`ersm_eval.study.study_tables`
aggregates over images and seeds (every array in ascending dataset index order):

* ``accuracy``: correctness at k = 0 (nothing deleted), 0 or 1;
* ``loss``: the cross-entropy −log p(true class) of the clean image (left out when
  a probability underflows to 0, where the loss is infinite);
* ``mean_keep``: the image's mean keep probability (gated models only);
* ``<ranking>_auc_diff``: the normalized area under the image's correctness curve
  for the ranking minus random's (random first averaged over its seeds), whose mean
  over images is the run's ``auc_diff``;
* ``localization_excess``: the model's own map's mass on the object (``keep`` for a
  gated model, else ``cam``) minus the better trivial map's (the baseline named in
  ``localization.csv``), on every image when every image has an object mask.

Deletion records that hold both deletion orders would add ``<ranking>_sg`` (the
symmetric gain) here; records of one order have none.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ersm_eval.records import sort_records
from ersm_eval.stats import normalized_auc

__all__ = ["per_image_values", "deletion_per_image", "sparsity_per_image"]

OWN_MAPS = ("keep", "cam")  # the map whose localization a study reports: the gate's when there is one


def deletion_per_image(records: Mapping[str, np.ndarray], evaluation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """accuracy and ``<ranking>_auc_diff`` per image from deletion records.

    Args:
        records: the deletion evaluator's records (``index``, ``correct`` [n, curves, steps]).
        evaluation: the run's ``summary.evaluation`` (``curves``, ``k_values``, ``n_tokens``).
    """
    rec = sort_records(dict(records), "deletion")
    correct = np.asarray(rec["correct"], dtype=np.float64)
    out = {"accuracy": correct[:, 0, 0]}  # k = 0: every curve starts from the clean image
    curves = [(c["ranking"], int(c["seed"])) for c in evaluation["curves"]]
    fraction = np.asarray(evaluation["k_values"], dtype=np.float64) / float(evaluation["n_tokens"])
    columns: dict[str, list[int]] = {}
    for position, (name, _) in enumerate(curves):
        columns.setdefault(name, []).append(position)
    if "random" in columns:
        random_area = normalized_auc(fraction, correct[:, columns["random"], :].mean(1))
        for name, cols in columns.items():
            if name != "random":
                out[f"{name}_auc_diff"] = normalized_auc(fraction, correct[:, cols, :].mean(1)) - random_area
    return out


def sparsity_per_image(records: Mapping[str, np.ndarray], tables: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """loss, mean_keep and localization_excess per image from sparsity records and tables."""
    rec = sort_records(dict(records), "sparsity")
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore"):
        loss = -np.log(np.asarray(rec["true_prob"], dtype=np.float64))
    if np.isfinite(loss).all():
        out["loss"] = loss
    per_image = tables["per_image.csv"].sort_values("index", kind="stable")
    keep = per_image["mean_keep"].to_numpy(dtype=np.float64)
    if np.isfinite(keep).all():
        out["mean_keep"] = keep
    localization = tables.get("localization.csv")
    own = next((m for m in OWN_MAPS if f"{m}_mass" in rec), None)
    if localization is not None and own is not None and bool(np.asarray(rec["has_mask"]).all()):
        row = localization[(localization["map"] == own) & (localization["metric"] == "mass_in_object")]
        baseline = str(row["baseline"].iloc[0]) if len(row) else ""
        if baseline:
            excess = np.asarray(rec[f"{own}_mass"], dtype=np.float64) - np.asarray(rec[f"{baseline}_mass"], dtype=np.float64)
            if np.isfinite(excess).all():
                out["localization_excess"] = excess
    return out


def per_image_values(deletion: Any, sparsity: Any = None) -> dict[str, np.ndarray]:
    """Every study metric's per-image values of one checkpoint.

    Args:
        deletion: its deletion :class:`~ersm_eval.results.EvaluationResult` (with records).
        sparsity: its sparsity result, or None (sparsity skipped: no loss, keep or localization).

    Returns:
        metric name → values [n images], in ascending dataset index order.

    Raises:
        ValueError: the two evaluations saw different images.
    """
    out = deletion_per_image(deletion.records, deletion.summary.evaluation)
    if sparsity is not None:
        a = np.sort(np.asarray(deletion.records["index"]))
        b = np.sort(np.asarray(sparsity.records["index"]))
        if not np.array_equal(a, b):
            raise ValueError("the deletion and sparsity evaluations of a checkpoint saw different images")
        out.update(sparsity_per_image(sparsity.records, sparsity.tables))
    return out
