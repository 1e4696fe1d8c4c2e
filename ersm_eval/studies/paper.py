"""The paper's tables from a study's groups and group summary: display cells and their numbers.

* **Pilot table**: one row per group (variant): accuracy, mean keep, and the verdict
  statistic of the variant's own ranking (symmetric gain, else ΔAUC to random), each
  as mean ± std over seeds with the seed count, and the verdict with how many seeds
  alone reach it.
* **Backbone table**: one row per dataset × backbone × resolution × patch size: the
  baseline's accuracy and loss beside the energy-masked variant's.

Every cell reads ``mean ± std (n seeds)``; a one-seed cell has no spread and says
``(1 seed)``. The cells are built here, from the unrounded numbers of
group_summary.csv, so every rendering (Markdown, LaTeX, CSV) shows the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from ersm_eval.studies.verdicts import NO_VERDICT, format_spread, format_value

__all__ = [
    "MISSING",
    "DEFAULT_OWN_RANKING",
    "FALLBACK_RANKING",
    "BACKBONE_FIELDS",
    "PaperTable",
    "table_cell",
    "verdict_cell",
    "pilot_table",
    "backbone_table",
    "paper_tables",
]

MISSING = "–"  # a cell with no number
# The ranking each variant is judged by: its own token scores (energy for ERSM-Full, the unary
# potential for ERSM-Unary, the keep value of the L0 gate); variants without one fall back to CAM.
DEFAULT_OWN_RANKING = {"ersm_full": "energy", "ersm_unary": "unary", "l0": "keep"}
FALLBACK_RANKING = "cam"
BACKBONE_FIELDS = ("dataset", "backbone", "image_size", "patch_size")  # the backbone table's row key
_BACKBONE_HEADERS = {"dataset": "Dataset", "backbone": "Backbone", "image_size": "Resolution", "patch_size": "Patch"}
_STATISTICS = {"sg": "SG", "auc_diff": "ΔAUC"}
_NUMBER_COLUMNS = ("table", "row", "column", "group", "metric", "mean", "std", "n_seeds", "cell")


@dataclass(frozen=True)
class PaperTable:
    """One paper table: display cells, the numbers behind them, and the note under it."""

    name: str  # "pilot" or "backbone"
    title: str  # a caption's first words
    cells: pd.DataFrame  # display strings, one column per shown column; the index is the numbers' ``row``
    numbers: pd.DataFrame  # long form: row, column, group, metric, mean, std, n_seeds, cell
    note: str  # what the cells mean


def table_cell(metric: str, mean: Any, std: Any, n_seeds: Any) -> str:
    """``"91.2 ± 0.8 (3 seeds)"``; ``"91.2 (1 seed)"`` with one seed; :data:`MISSING` without a number.

    Accuracy is shown in percent; judged statistics (ΔAUC, SG, localization excess) signed.
    """
    value = format_value(metric, mean)
    if value == "n/a":
        return MISSING
    try:
        n = int(n_seeds)
    except (TypeError, ValueError):
        n = 0
    if n == 1:
        return f"{value} (1 seed)"
    return f"{value} ± {format_spread(metric, std)} ({n} seeds)"


def verdict_cell(verdict: Any, agreeing: Any, n_seeds: Any) -> str:
    """``"supports (3 of 3 seeds)"``; ``"supports (1 seed)"``; :data:`MISSING` without a verdict."""
    if not isinstance(verdict, str) or not verdict or verdict == NO_VERDICT:
        return MISSING
    try:
        n, k = int(n_seeds), int(agreeing)
    except (TypeError, ValueError):
        return verdict.replace("_", " ")
    return f"{verdict.replace('_', ' ')} ({'1 seed' if n == 1 else f'{k} of {n} seeds'})"


def _summary_rows(summary: pd.DataFrame) -> dict[tuple[str, str], Mapping]:
    return {(str(r["group"]), str(r["metric"])): r for _, r in summary.iterrows()}


def _first_rows(groups: pd.DataFrame) -> dict[str, Mapping]:
    return {str(g): rows.iloc[0] for g, rows in groups.groupby(groups["group"].astype(str), sort=False)}


def _number(table: str, row: str, column: str, group: str, metric: str, found: Mapping | None, cell: str) -> dict:
    get = (lambda key: found.get(key)) if found is not None else (lambda key: None)
    return {"table": table, "row": row, "column": column, "group": group, "metric": metric,
            "mean": get("mean"), "std": get("std"), "n_seeds": get("n_seeds"), "cell": cell}


def _cell(rows: Mapping, group: str, metric: str) -> tuple[str, Mapping | None]:
    found = rows.get((group, metric))
    if found is None:
        return MISSING, None
    return table_cell(metric, found["mean"], found["std"], found["n_seeds"]), found


def pilot_table(
    groups: pd.DataFrame, summary: pd.DataFrame, statistic: str | None = None,
    own_ranking: Mapping[str, str] | None = None,
) -> PaperTable:
    """One row per group: accuracy, mean keep, and the own ranking's statistic with its verdict.

    Args:
        groups: groups.csv (``group`` and, where recorded, ``variant``).
        summary: group_summary.csv.
        statistic: ``"sg"`` (symmetric gain) or ``"auc_diff"`` (ΔAUC to random); None takes
            SG when the summary has any, else ΔAUC.
        own_ranking: variant -> ranking name (default :data:`DEFAULT_OWN_RANKING`); a variant
            with none, or whose ranking the summary lacks, is shown with :data:`FALLBACK_RANKING`.

    Raises:
        ValueError: an unknown ``statistic``.
    """
    metrics = set(summary["metric"].astype(str))
    if statistic is None:
        statistic = "sg" if any(m.endswith("_sg") for m in metrics) else "auc_diff"
    if statistic not in _STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(_STATISTICS)}")
    own = dict(DEFAULT_OWN_RANKING if own_ranking is None else own_ranking)
    rows, firsts, label = _summary_rows(summary), _first_rows(groups), _STATISTICS[statistic]
    stat_column = f"{label} of own ranking"
    cells, numbers = [], []
    for group, first in firsts.items():
        variant = str(first.get("variant", group)) if pd.notna(first.get("variant", group)) else group
        ranking = own.get(variant, FALLBACK_RANKING)
        if (group, f"{ranking}_{statistic}") not in rows:
            ranking = FALLBACK_RANKING
        record = {"Variant": group}
        for column, metric in (("Accuracy (%)", "accuracy"), ("Mean keep", "mean_keep"),
                               (stat_column, f"{ranking}_{statistic}")):
            record[column], found = _cell(rows, group, metric)
            numbers.append(_number("pilot", group, column, group, metric, found, record[column]))
            if metric == f"{ranking}_{statistic}":
                record["Ranking"] = ranking if found is not None else MISSING
                record["Verdict"] = (verdict_cell(found.get("verdict"), found.get("seeds_agreeing"), found["n_seeds"])
                                     if found is not None else MISSING)
        cells.append(record)
    columns = ["Variant", "Accuracy (%)", "Mean keep", "Ranking", stat_column, "Verdict"]
    what = ("symmetric gain (area of least-relevant-first deletion minus most-relevant-first)" if statistic == "sg"
            else "ΔAUC (area of the ranking's deletion curve minus random deletion's)")
    note = (f"Mean ± standard deviation over training seeds (ddof = 1), the number of seeds in each cell; one seed "
            f"gives no spread (training variance not measured). {label}: {what} of the variant's own ranking. "
            "Verdict from the two-level 95% bootstrap interval (seeds, then images), with how many seeds alone "
            "reach it.")
    return PaperTable("pilot", "Pilot: accuracy, mean keep and deletion verdict per variant",
                      pd.DataFrame(cells, columns=columns, index=pd.Index(list(firsts), name="row")),
                      pd.DataFrame(numbers, columns=list(_NUMBER_COLUMNS)), note)


def _key_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def backbone_table(groups: pd.DataFrame, summary: pd.DataFrame, baseline: str = "baseline",
                   ersm: str = "ersm_full") -> PaperTable:
    """One row per dataset × backbone × resolution × patch size: baseline and ERSM accuracy and loss.

    Args:
        groups: groups.csv with ``variant`` and the :data:`BACKBONE_FIELDS` columns.
        summary: group_summary.csv (metrics ``accuracy`` and ``loss``).
        baseline, ersm: the two variants compared.

    Raises:
        ValueError: groups.csv lacks those columns, or two groups of one variant share a row
            (they differ in something else: group them differently or split the study).
    """
    lacking = [c for c in ("variant", *BACKBONE_FIELDS) if c not in groups.columns]
    if lacking:
        raise ValueError(f"the backbone table needs the groups.csv columns {lacking}, which the checkpoints did not record")
    rows, slots = _summary_rows(summary), {}
    for group, first in _first_rows(groups).items():
        variant = str(first["variant"])
        if variant not in (baseline, ersm):
            continue
        key = tuple(_key_text(first[f]) for f in BACKBONE_FIELDS)
        if (key, variant) in slots:
            raise ValueError(
                f"groups {slots[(key, variant)]!r} and {group!r} are both {variant} on {', '.join(key)}; the backbone "
                "table needs one group per row and variant (group by fewer fields or split the study)"
            )
        slots[(key, variant)] = group
    keys = sorted({key for key, _ in slots}, key=lambda k: tuple((0, int(v)) if v.isdigit() else (1, v) for v in k))
    headers = [_BACKBONE_HEADERS[f] for f in BACKBONE_FIELDS]
    columns = [(f"{v} accuracy (%)", v, "accuracy") for v in (baseline, ersm)]
    columns = [columns[0], (f"{baseline} loss", baseline, "loss"), columns[1], (f"{ersm} loss", ersm, "loss")]
    cells, numbers, labels = [], [], []
    for key in keys:
        record = dict(zip(headers, key))
        label = " / ".join(key)
        labels.append(label)
        for column, variant, metric in columns:
            group = slots.get((key, variant))
            record[column], found = _cell(rows, group, metric) if group is not None else (MISSING, None)
            numbers.append(_number("backbone", label, column, group or "", metric, found, record[column]))
        cells.append(record)
    note = (f"Mean ± standard deviation over training seeds (ddof = 1), the number of seeds in each cell; one seed "
            f"gives no spread (training variance not measured). Accuracy: top-1 in percent; loss: mean "
            f"cross-entropy per image. {baseline} beside {ersm}, trained alike.")
    return PaperTable("backbone", f"Backbones: {baseline} and {ersm} accuracy and loss",
                      pd.DataFrame(cells, columns=headers + [c for c, _, _ in columns], index=pd.Index(labels, name="row")),
                      pd.DataFrame(numbers, columns=list(_NUMBER_COLUMNS)), note)


def paper_tables(groups: pd.DataFrame, summary: pd.DataFrame, baseline: str = "baseline",
                 ersm: str = "ersm_full") -> list[PaperTable]:
    """The pilot table, then the backbone table when groups.csv records its fields and holds either variant."""
    tables = [pilot_table(groups, summary)]
    if all(c in groups.columns for c in ("variant", *BACKBONE_FIELDS)) and \
            groups["variant"].astype(str).isin([baseline, ersm]).any():
        tables.append(backbone_table(groups, summary, baseline, ersm))
    return tables
