"""Reading one CSV of a run folder: its columns against the schema, its values against their ranges.

A table is read as text, its numeric columns converted and checked (finite, in the range the
evaluators write), its boolean column read as true/false; any deviation is one
:class:`~reports.tables.run.ReportError` naming the file, the column and the row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ersm_eval.schema import TABLES
from reports.tables.run import ReportError

__all__ = ["KNOWN_TABLES", "read_table", "check_recorded"]

KNOWN_TABLES: dict[str, list[str]] = dict(TABLES)  # every table a report reads, with its required columns

# columns holding text; "correct" is boolean; every other known column is numeric
_TEXT = {"checkpoint", "ranking", "order", "randomized", "ranking_a", "ranking_b", "test", "fill", "pattern", "map", "metric", "class_name", "failure",
         "verdict"}
_BOOL = {"correct"}
_NAN_WORDS = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}



# value ranges of the numeric columns, as the evaluators write them (NaN / empty stays allowed: "no
# value"); every other numeric column must be finite. "prob": in [0, 1]; "diff": a difference of two
# such values, in [-1, 1]; "count": an integer ≥ 0; "seed": an integer ≥ -1 (-1: no seed); "sd": ≥ 0.
_PROB = ("prob", 0.0, 1.0, False)
_DIFF = ("diff", -1.0, 1.0, False)
_COUNT = ("count", 0.0, None, True)
_RANGES: dict[str, dict[str, tuple[str, float, float | None, bool]]] = {
    "deletion_curves.csv": {"seed": ("seed", -1.0, None, True), "k": _COUNT, "fraction_removed": _PROB,
                            "n_images": _COUNT, "accuracy": _PROB, "ci_low": _PROB, "ci_high": _PROB,
                            "mean_true_prob": _PROB},
    "deletion_summary.csv": {
        "n_seeds": _COUNT, "n_images": _COUNT, "acc_k0": _PROB, "peak_accuracy": _PROB, "peak_k": _COUNT,
        **{f"{p}auc_{o}": _PROB for p in ("", "prob_") for o in ("lerf", "morf")},
        **{f"{p}{m}{e}": _DIFF for p in ("", "prob_") for m in ("auc_diff_lerf", "auc_diff_morf", "sg")
           for e in ("", "_ci_low", "_ci_high")},
        **{f"{p}{m}_p_value": _PROB for p in ("", "prob_") for m in ("auc_diff_lerf", "auc_diff_morf", "sg")},
        "sg_minus_center": ("diff", -2.0, 2.0, False), "sg_minus_center_ci_low": ("diff", -2.0, 2.0, False),
        "sg_minus_center_ci_high": ("diff", -2.0, 2.0, False), "max_gap_to_random": _DIFF, "max_gap_k": _COUNT, "max_gap_ci_low": _DIFF,
        "max_gap_ci_high": _DIFF, "min_gap_to_random": _DIFF, "min_gap_k": _COUNT, "min_gap_ci_low": _DIFF,
        "min_gap_ci_high": _DIFF, "steps_above_random": _COUNT, "steps_below_random": _COUNT, "n_steps": _COUNT,
        "half_accuracy_k": _COUNT},
    "deletion_tests.csv": {"k": _COUNT, "accuracy": _PROB, "random_accuracy": _PROB, "difference": _DIFF,
                           "ci_low": _DIFF, "ci_high": _DIFF, "p_value": _PROB},
    "insertion_curves.csv": {"seed": ("seed", -1.0, None, True), "k": _COUNT, "fraction_inserted": _PROB,
                             "n_images": _COUNT, "accuracy": _PROB, "ci_low": _PROB, "ci_high": _PROB,
                             "mean_true_prob": _PROB},
    "insertion_summary.csv": {
        "n_seeds": _COUNT, "n_images": _COUNT, "acc_k0": _PROB, "auc": _PROB, "prob_auc": _PROB,
        **{f"{p}auc_diff{e}": _DIFF for p in ("", "prob_") for e in ("", "_ci_low", "_ci_high")},
        **{f"{p}auc_diff_p_value": _PROB for p in ("", "prob_")}},
    "ranking_agreement.csv": {"n_images": _COUNT, "spearman_mean": _DIFF, "spearman_sd": ("sd", 0.0, None, False),
                              "kendall_mean": _DIFF, "kendall_sd": ("sd", 0.0, None, False),
                              "overlap25_mean": _PROB, "overlap50_mean": _PROB},
    "occlusion.csv": {"n": _COUNT, "accuracy": _PROB, "ci_low": _PROB, "ci_high": _PROB, "mean_true_prob": _PROB},
    "occlusion_summary.csv": {"auc": _PROB, "acc0": _PROB, "diff_auc_to_first": _DIFF, "diff_ci_low": _DIFF,
                              "diff_ci_high": _DIFF},
    "map_randomization.csv": {"n_images": _COUNT, "spearman": _DIFF, "ci_low": _DIFF, "ci_high": _DIFF},
    "keep_histogram.csv": {"bin_low": _PROB, "bin_high": _PROB, "count": _COUNT},
    "per_class_keep.csv": {"class_index": _COUNT, "n": _COUNT, "mean_keep": _PROB, "accuracy": _PROB},
    "per_image.csv": {"index": _COUNT, "label": _COUNT, "prediction": _COUNT, "confidence": _PROB,
                      "mean_keep": _PROB, "object_keep_mass": _PROB, "iou": _PROB},
}
_SLACK = 1e-6  # floating-point rounding of values computed at the bounds


def _check_range(path: Path, name: str, column: str, raw: pd.Series, values: pd.Series, n_tokens: int | None) -> None:
    """Refuse the first value of a numeric column outside what the evaluators write (inf anywhere)."""
    array = values.to_numpy(float)
    present = ~np.isnan(array)
    bad = present & ~np.isfinite(array)
    want = "a finite number"
    rule = _RANGES.get(name, {}).get(column)
    if rule is not None:
        kind, low, high, integer = rule
        with np.errstate(invalid="ignore"):
            out = array < low - _SLACK
            if high is not None:
                out |= array > high + _SLACK
            if integer:
                out |= array != np.round(array)
        if column in ("k", "peak_k", "max_gap_k", "min_gap_k", "half_accuracy_k") and n_tokens is not None:
            out |= array > n_tokens
            high = n_tokens
        bad |= present & out
        want = {"prob": "a number in [0, 1]", "diff": "a number in [-1, 1]", "sd": "a non-negative number",
                "count": "a non-negative integer" if high is None else f"an integer in [0, {high:g}]",
                **({"diff": "a number in [-2, 2]"} if high == 2.0 else {}),
                "seed": "an integer of at least -1"}[kind]
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReportError(f"{path}: column {column!r} must be {want}, found {raw.iloc[row]!r} (data row {row + 1}); "
                          "the file was edited or damaged, re-run the evaluation that writes it")


def _ragged(path: Path, text: str) -> None:
    """Refuse a CSV whose rows do not all have the header's number of fields, or that stops mid-line."""
    if text and not text.endswith(("\n", "\r")):
        raise ReportError(f"{path}: the file does not end with a line break, so it looks truncated; "
                          "re-run the evaluation that writes it")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return
    for line, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            raise ReportError(f"{path}: line {line} has {len(row)} fields where the header has {len(header)}; "
                              "the file was truncated or edited, re-run the evaluation that writes it")


def read_table(path: Path, name: str, n_tokens: int | None = None) -> pd.DataFrame:
    """Table ``name`` of a run folder, typed: text columns as text, ``correct`` as bool, the rest as floats.

    Raises:
        ReportError: the file is not a CSV, is cut mid-line, lacks a column of the schema (a folder
            of an older ersm-eval), or holds a value outside what the evaluators write.
    """
    try:
        text = path.read_text(encoding="utf-8")
        _ragged(path, text)
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, csv.Error) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportError(f"{path}: not a readable CSV ({detail}); re-run the evaluation that writes {name}") from None
    required = KNOWN_TABLES[name]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ReportError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}; {name} needs {', '.join(required)} "
            "(the folder was written by an older ersm-eval or edited; re-run the evaluation that writes it)"
        )
    table = raw.copy()
    for column in raw.columns:
        if column in _TEXT or column not in required:
            continue  # text, or an extra column the schema allows: left as text
        text = raw[column].str.strip()
        if column in _BOOL:
            lowered = text.str.lower()
            bad = ~lowered.isin(_TRUE | _FALSE)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ReportError(
                    f"{path}: column {column!r} must be true/false, found {raw[column].iloc[row]!r} (data row {row + 1})"
                )
            table[column] = lowered.isin(_TRUE)
            continue
        values = pd.to_numeric(text.where(~text.str.lower().isin(_NAN_WORDS), np.nan), errors="coerce")
        bad = values.isna() & ~text.str.lower().isin(_NAN_WORDS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportError(
                f"{path}: column {column!r} must be numeric, found {raw[column].iloc[row]!r} (data row {row + 1})"
            )
        _check_range(path, name, column, raw[column], values, n_tokens)
        table[column] = values.astype(float)
    return table


def check_recorded(path: Path, summary: dict[str, Any], tables: dict[str, pd.DataFrame], empty: set[str]) -> None:
    """Check the tables against what summary.json says was written.

    summary.json's ``"tables"`` maps each file name to its row count; a listed table that is
    gone, or a row count that differs, means the folder was edited or truncated after the run.
    """
    recorded = summary.get("tables")
    if not isinstance(recorded, dict):
        return
    for name, count in recorded.items():
        if name not in KNOWN_TABLES:
            continue
        if name not in tables and name not in empty:
            raise ReportError(f"{path}: summary.json lists {name} but the file is missing; "
                              "the folder was edited after the run, re-run the evaluation")
        if isinstance(count, bool) or not isinstance(count, (int, float)):
            continue
        rows = len(tables[name]) if name in tables else 0
        if rows != int(count):
            raise ReportError(f"{path / name}: {rows} data rows, but the run recorded {int(count)} in summary.json; "
                              "the file was truncated or edited, re-run the evaluation that writes it")

