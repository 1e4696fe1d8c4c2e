"""The comparative report's section on differences between models.

A comparison is a study whose groups hold one checkpoint each, so its
``group_differences.csv`` holds the paired difference of every two models on the same
images. This section shows that table and says each row in the words of
:func:`ersm_eval.studies.difference_sentence`.
"""

from __future__ import annotations

import pandas as pd

from ersm_eval.studies import difference_sentence
from ersm_eval.studies.verdicts import format_value
from reports.html.blocks import Reading, Section, TableBlock

__all__ = ["differences_section"]


def differences_section(table: pd.DataFrame | None) -> Section | None:
    """One section: per pair of models, a reading in words and a row per metric (None without rows)."""
    if table is None or table.empty:
        return None
    rows, readings = [], []
    for (a, b), pair in table.groupby(["group_a", "group_b"], sort=False):
        readings.append(Reading(f"{a} − {b}", [difference_sentence(row) for _, row in pair.iterrows()]))
        for _, row in pair.iterrows():
            metric = str(row["metric"])
            rows.append([str(a), str(b), metric, format_value(metric, row["diff"], True),
                         format_value(metric, row["ci_low"], True), format_value(metric, row["ci_high"], True),
                         str(row["verdict"])])
    block = TableBlock(
        caption="Paired differences (first model minus second) on the same images, with 95% bootstrap intervals",
        columns=["model a", "model b", "metric", "difference", "CI low", "CI high", "reading"], rows=rows,
        note="Accuracy differences are in percentage points. With one checkpoint per model the intervals are over "
             "images only: they do not include the variation between training runs (a study of several seeds per "
             "variant measures it).",
        text_columns=3)
    return Section("differences", "Differences between models",
                   intro="Every pair of models, compared image by image on the same images (group_differences.csv).",
                   readings=readings, tables=[block])
