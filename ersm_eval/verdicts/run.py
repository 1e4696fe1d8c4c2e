"""What a deletion run concludes, from its tables: the chance test and every ranking's verdict.

One rule: deletion_summary.csv's verdict column and these both come from
:func:`~ersm_eval.verdicts.orders.order_verdict` (the symmetric gain's interval).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ersm_core.errors import DatasetError
from ersm_eval.verdicts.orders import order_verdict
from ersm_eval.verdicts.rules import (ChanceTest, chance_sentence, chance_test, deletion_sentence, follows_position,
                                      position_sentence)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["deletion_chance_test", "deletion_verdicts"]


def deletion_chance_test(curves: pd.DataFrame, n_classes: int) -> ChanceTest:
    """The chance test of a run from its deletion_curves.csv: the k = 0 accuracy (the same for every
    curve, nothing is deleted yet) against 1 / ``n_classes``."""
    first = curves[curves["k"] == 0]
    if first.empty:
        raise DatasetError("deletion_curves.csv has no k = 0 rows, so the chance test cannot be computed")
    row = first.iloc[0]
    n = int(row["n_images"])
    return chance_test(int(round(float(row["accuracy"]) * n)), n, n_classes)


def deletion_verdicts(tables: dict[str, pd.DataFrame], n_classes: int, label: str = "",
                      diagnostics_note: str | None = None) -> dict[str, Any]:
    """What a deletion run concludes, for summary.json and the console, from its tables.

    Returns a dict with ``chance_test`` (k = 0 accuracy, Wilson interval, chance,
    ``at_chance``), ``verdicts`` (ranking → verdict; random is the reference and has
    none), ``sentences`` (``chance``, ``rankings``: ranking → sentence, ``position``:
    the energy diagnostics' sentence or None) and ``energy_diagnostics`` (metric →
    value, or the note saying why there are none). Every word comes from
    :mod:`ersm_eval.verdicts`.
    """
    test = deletion_chance_test(tables["deletion_curves.csv"], n_classes)
    summary = tables["deletion_summary.csv"]
    verdicts, sentences = {}, {}
    for row in summary.to_dict("records"):
        if row["ranking"] == "random":
            continue
        row["verdict"] = order_verdict(row.get("sg_ci_low"), row.get("sg_ci_high"), test.at_chance)
        verdicts[row["ranking"]] = row["verdict"]
        sentences[row["ranking"]] = deletion_sentence(row, test, label)
    diag_table = tables.get("energy_diagnostics.csv")
    position, diagnostics = None, diagnostics_note
    if diag_table is not None and not diag_table.empty:
        values = dict(zip(diag_table["metric"], diag_table["value"].astype(float)))
        diagnostics = values
        position = position_sentence(values.get("spearman_center", float("nan")),
                                               values.get("spearman_neighbours", float("nan")),
                                               values.get("pairwise_share", float("nan")))
        diagnostics = {**values, "follows_position": follows_position(
            values.get("spearman_center", float("nan")), values.get("spearman_neighbours", float("nan")))}
    return {
        "chance_test": test.as_dict(),
        "verdicts": verdicts,
        "sentences": {"chance": chance_sentence(test, label), "rankings": sentences, "position": position},
        "energy_diagnostics": diagnostics,
    }
