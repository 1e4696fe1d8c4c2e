"""The tables of input-level insertion from a deletion run's per-image records.

Insertion is the other half of the insertion/deletion protocol: start from a blurred
copy of the image (σ = half a token's side, :func:`ersm_eval.fills.insertion_images`)
and put the original pixels back under the first k tokens of an order, for the same
k values as deletion. A scored ranking inserts in its MoRF order (what it calls most
important first); ``random`` inserts in its seeded permutations. A ranking that knows
what the model needs recovers accuracy fast, so a *higher* insertion area is better.

The evaluator keeps, per image, ``insertion_correct`` and ``insertion_true_prob``
[n, curves, S] beside deletion's records; :func:`insertion_tables` reads them sorted by
dataset index and writes insertion_curves.csv and insertion_summary.csv. Per image i,
AUC_i is the normalized area under its correctness curve over the fraction inserted
(random: correctness averaged over the seeds first); ``auc_diff`` is the mean over
images of AUC_i(ranking) − AUC_i(random) with the paired bootstrap 95% interval and
p-value of :mod:`ersm_eval.stats`, and its interval gives the verdict of
:func:`ersm_eval.verdicts.insertion.insertion_verdict`. The chance test is deletion's:
the model's accuracy on the unchanged images (k = 0 of deletion) against chance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ersm_eval.deletion.settings import DeletionSettings
from ersm_eval.deletion.tables import curves_table, gain_columns
from ersm_eval.orders import order_areas
from ersm_eval.records import no_images_error, sort_records
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_weights
from ersm_eval.verdicts import chance_test
from ersm_eval.verdicts.insertion import insertion_verdict

__all__ = ["INSERTION_KEYS", "insertion_per_image", "insertion_tables"]

INSERTION_KEYS = ("insertion_correct", "insertion_true_prob")  # the records insertion adds, [n, curves, S]


def _columns(curve_specs: Sequence[tuple[str, str, int]]) -> dict[str, list[int]]:
    """ranking -> its insertion curves' positions on the records' insertion axis."""
    out: dict[str, list[int]] = {}
    for c, (name, _, _) in enumerate(curve_specs):
        out.setdefault(name, []).append(c)
    return out


def insertion_per_image(records: dict[str, np.ndarray], curve_specs: Sequence[tuple[str, str, int]],
                        steps: np.ndarray, n_tokens: int, value: str = "correct") -> dict[str, np.ndarray]:
    """Per-image normalized insertion areas, images sorted by dataset index: ranking -> [n].

    ``value``: ``correct`` (0/1) or ``true_prob``. Random's curves are averaged over its
    seeds per image before the area is taken.
    """
    rec = sort_records(records, "insertion")
    data = rec[f"insertion_{value}"].astype(np.float64)
    fraction = np.asarray(steps) / n_tokens
    return {name: order_areas(fraction, data[:, cols, :].mean(1)) for name, cols in _columns(curve_specs).items()}


def insertion_tables(records: dict[str, np.ndarray], curve_specs: Sequence[tuple[str, str, int]],
                     names: Sequence[str], steps: np.ndarray, n_tokens: int, n_classes: int,
                     st: DeletionSettings) -> dict[str, pd.DataFrame]:
    """insertion_curves.csv and insertion_summary.csv of a run's records.

    Args:
        records: per-image records in any order (deletion's, with :data:`INSERTION_KEYS`).
        curve_specs: (ranking, order, seed) of every insertion curve, in the records' insertion axis order.
        names: the rankings, in table order.
        steps: the k values [S] (tokens inserted).
        n_tokens: N, tokens of the map.
        n_classes: classes of the model (chance = 1 / n_classes).
        st: the settings (label, bootstrap).

    Raises:
        DatasetError: no images.
        ValueError: records without insertion values.
    """
    missing = [k for k in INSERTION_KEYS if k not in records]
    if missing:
        raise ValueError(f"the records hold no insertion values ({', '.join(missing)}); evaluate with insertion=True")
    rec = sort_records(records, "insertion")
    n = len(rec["index"])
    if n == 0:
        raise no_images_error("insertion")
    label = st.label
    correct = rec["insertion_correct"]
    fraction = np.asarray(steps) / n_tokens
    curves = curves_table(correct, rec["insertion_true_prob"].astype(np.float64), curve_specs, steps, fraction, label,
                          "insertion_curves.csv", "fraction_inserted")
    columns = _columns(curve_specs)
    areas = insertion_per_image(rec, curve_specs, steps, n_tokens)
    prob_areas = insertion_per_image(rec, curve_specs, steps, n_tokens, "true_prob")
    weights = bootstrap_weights(n, st.n_boot, st.boot_seed)
    at_chance = chance_test(int(rec["correct"][:, 0, 0].sum()), n, n_classes).at_chance  # deletion's k = 0
    rows = []
    for name in names:
        if name not in columns:
            continue
        cols = columns[name]
        row = {"checkpoint": label, "ranking": name, "order": curve_specs[cols[0]][1], "n_seeds": len(cols),
               "n_images": n, "acc_k0": float(correct[:, cols, 0].mean()), "auc": float(areas[name].mean()),
               "prob_auc": float(prob_areas[name].mean()), "verdict": ""}
        if name != "random":
            if "random" in areas:
                row.update(gain_columns("auc_diff", areas[name] - areas["random"], weights))
                row.update(gain_columns("prob_auc_diff", prob_areas[name] - prob_areas["random"], weights))
            row["verdict"] = insertion_verdict(row.get("auc_diff_ci_low"), row.get("auc_diff_ci_high"), at_chance)
        rows.append(row)
    summary = pd.DataFrame(rows, columns=TABLES["insertion_summary.csv"])
    for col in ("n_seeds", "n_images"):
        summary[col] = summary[col].astype("Int64")
    return {"insertion_curves.csv": curves, "insertion_summary.csv": summary}


