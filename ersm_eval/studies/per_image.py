"""The per-image values of a study's metrics, from one checkpoint's evaluation records.

:func:`per_image_values` is the one place where a checkpoint's deletion and sparsity
records become the per-image arrays that :func:`ersm_eval.studies.study_tables`
aggregates over images and seeds (every array in ascending dataset index order):

* ``accuracy``: correctness of the model as trained (its gate on), 0 or 1, from the
  sparsity evaluation; without it, correctness at deletion's k = 0 (nothing deleted),
  which is the same for a model without a gate; a gated model's k = 0 replaces its gate
  by 1, so there it is reported as ``accuracy_without_gate`` instead (descriptive);
* ``loss``: the cross-entropy −log p(true class) of the clean image (left out when
  a probability underflows to 0, where the loss is infinite);
* ``mean_keep``: the image's mean keep probability (gated models only);
* ``<ranking>_sg``: the symmetric gain, the normalized area under the image's
  correctness curve when the ranking's least important tokens go first (LeRF) minus
  the area when its most important go first (MoRF); its mean over images is the
  run's ``sg``;
* ``<ranking>_auc_diff_lerf`` / ``_morf``: each order's area minus random's (random
  first averaged over its seeds), whose means are the run's ``auc_diff_lerf`` / ``_morf``;
* ``localization_excess``: the model's own map's mass on the object (``keep`` for a
  gated model, else ``cam``) minus the better trivial map's (the baseline named in
  ``localization.csv``), on every image when every image has an object mask.

"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ersm_eval.records import sort_records

__all__ = ["per_image_values", "deletion_per_image", "sparsity_per_image"]

OWN_MAPS = ("keep", "cam")  # the map whose localization a study reports: the gate's when there is one


def deletion_per_image(records: Mapping[str, np.ndarray], evaluation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """accuracy, ``<ranking>_sg`` and each order's ``<ranking>_auc_diff_lerf`` / ``_morf`` per image.

    Args:
        records: the deletion evaluator's records (``index``, ``correct`` [n, curves, steps]).
        evaluation: the run's ``summary.evaluation`` (``curves`` with ranking, order and seed,
            ``k_values``, ``n_tokens``).
    """
    from ersm_eval.deletion.tables import per_image_metrics

    rec = sort_records(dict(records), "deletion")
    out = {"accuracy": np.asarray(rec["correct"], dtype=np.float64)[:, 0, 0]}  # k = 0: the clean image
    specs = [(str(c["ranking"]), str(c["order"]), int(c["seed"])) for c in evaluation["curves"]]
    names = list(dict.fromkeys(name for name, _, _ in specs))
    metrics = per_image_metrics(rec, specs, names, np.asarray(evaluation["k_values"]), int(evaluation["n_tokens"]))
    for name in names:
        if name == "random":
            continue
        for metric in ("sg", "auc_diff_lerf", "auc_diff_morf"):
            if metric in metrics[name]:
                out[f"{name}_{metric}"] = metrics[name][metric]
    return out


def sparsity_per_image(records: Mapping[str, np.ndarray], tables: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """accuracy (the model as trained), loss, mean_keep and localization_excess per image from sparsity records
    and tables."""
    rec = sort_records(dict(records), "sparsity")
    out: dict[str, np.ndarray] = {}
    if "prediction" in rec and "label" in rec:
        out["accuracy"] = (np.asarray(rec["prediction"]) == np.asarray(rec["label"])).astype(np.float64)
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
        sparsity: its sparsity result, or None (sparsity skipped: no loss, keep or localization; the
            accuracy of a gated model is then only known without its gate).

    Returns:
        metric name → values [n images], in ascending dataset index order.

    Raises:
        ValueError: the two evaluations saw different images.
    """
    out = deletion_per_image(deletion.records, deletion.summary.evaluation)
    model = getattr(deletion.summary, "model", None)
    if sparsity is None and bool(getattr(model, "has_gate", False)):  # k = 0 is not the gated model's accuracy
        out["accuracy_without_gate"] = out.pop("accuracy")
    if sparsity is not None:
        a = np.sort(np.asarray(deletion.records["index"]))
        b = np.sort(np.asarray(sparsity.records["index"]))
        if not np.array_equal(a, b):
            raise ValueError("the deletion and sparsity evaluations of a checkpoint saw different images")
        out.update(sparsity_per_image(sparsity.records, sparsity.tables))
    return out
