"""The tables of a study: each checkpoint's figures, each group's, and the differences of groups.

:func:`study_tables` builds the three from every checkpoint's per-image values of every
metric (all on the same images, in the same order) and the groups table of
:func:`ersm_eval.studies.groups.group_checkpoints`:

* ``members.csv``: one row per checkpoint and metric, its own figure (mean over the
  images) with its image-level interval and the verdict that interval alone gives.
* ``group_summary.csv``: one row per group and metric, mean and std over seeds, the
  two-level interval, the verdict and how many seeds alone reach it.
* ``group_differences.csv``: one row per pair of groups (in the groups table's order,
  ``group_a`` before ``group_b``) and metric both have: group_a − group_b with its
  two-level interval (seeds independent, images paired).

Metric names are those of the per-checkpoint tables: ``accuracy`` (per-image
correctness, 0 or 1), ``mean_keep``, ``<ranking>_auc_diff``, ``<ranking>_sg``,
``localization_excess``, ``loss``; any other name is accepted as a mean of per-image
values and described without a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ersm_eval.studies.stats import LEVEL, N_BOOT, GroupEstimate, TwoLevelBootstrap
from ersm_eval.studies.verdicts import accuracy_verdict, difference_verdict, group_verdict, seeds_agreeing

__all__ = [
    "GROUPS_FILE",
    "MEMBERS_FILE",
    "SUMMARY_FILE",
    "DIFFERENCES_FILE",
    "MEMBER_COLUMNS",
    "SUMMARY_COLUMNS",
    "DIFFERENCE_COLUMNS",
    "METRIC_ORDER",
    "StudyTables",
    "study_tables",
    "read_study_tables",
]

GROUPS_FILE = "groups.csv"
MEMBERS_FILE = "members.csv"
SUMMARY_FILE = "group_summary.csv"
DIFFERENCES_FILE = "group_differences.csv"
MEMBER_COLUMNS = ("group", "checkpoint", "seed", "metric", "value", "ci_low", "ci_high", "verdict")
SUMMARY_COLUMNS = ("group", "metric", "mean", "std", "n_seeds", "ci_low", "ci_high", "verdict", "seeds_agreeing",
                   "training_variance_measured")
DIFFERENCE_COLUMNS = ("group_a", "group_b", "metric", "diff", "ci_low", "ci_high", "verdict", "n_seeds_a", "n_seeds_b")
METRIC_ORDER = ("accuracy", "loss", "mean_keep")  # shown first; the others follow by name


@dataclass(frozen=True)
class StudyTables:
    """The three tables of a study (the groups table is the caller's)."""

    members: pd.DataFrame  # MEMBER_COLUMNS
    group_summary: pd.DataFrame  # SUMMARY_COLUMNS
    group_differences: pd.DataFrame  # DIFFERENCE_COLUMNS

    def as_files(self) -> dict[str, pd.DataFrame]:
        """File name -> table, for writing into a study folder."""
        return {MEMBERS_FILE: self.members, SUMMARY_FILE: self.group_summary, DIFFERENCES_FILE: self.group_differences}


def _metric_key(metric: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _checked_inputs(per_image: Mapping[str, Mapping[str, Any]], groups: pd.DataFrame) -> tuple[dict, int]:
    """Per-image arrays by checkpoint and metric, all 1-D and of one length; the checkpoints those of ``groups``."""
    missing_columns = [c for c in ("group", "checkpoint", "seed") if c not in groups.columns]
    if missing_columns:
        raise ValueError(f"the groups table lacks the columns {missing_columns}; build it with group_checkpoints")
    listed = [str(c) for c in groups["checkpoint"]]
    given = [str(c) for c in per_image]
    lacking = [c for c in listed if c not in given]
    if lacking:
        raise ValueError(f"no per-image values for the checkpoints {', '.join(map(repr, lacking))} of the groups table")
    extra = [c for c in given if c not in listed]
    if extra:
        raise ValueError(f"per-image values for checkpoints that no group holds: {', '.join(map(repr, extra))}")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    lengths: dict[int, str] = {}
    for name, metrics in per_image.items():
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError(f"checkpoint {str(name)!r}: expected a mapping of metric name -> per-image values")
        arrays[str(name)] = {}
        for metric, values in metrics.items():
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1:
                raise ValueError(f"checkpoint {str(name)!r}, {metric}: per-image values must be one-dimensional, "
                                 f"got shape {array.shape}")
            lengths.setdefault(len(array), f"{name}/{metric}")
            arrays[str(name)][str(metric)] = array
    if len(lengths) > 1:
        seen = ", ".join(f"{n} ({where})" for n, where in lengths.items())
        raise ValueError(f"every checkpoint must be evaluated on the same images, but the value counts differ: {seen}")
    return arrays, next(iter(lengths))


def _group_chance(members: list[str], chance: float | Mapping[str, float] | None) -> float | None:
    if chance is None or isinstance(chance, (int, float)):
        return None if chance is None else float(chance)
    levels = {float(chance[m]) for m in members if m in chance}
    if len(levels) > 1:
        raise ValueError(f"checkpoints {', '.join(map(repr, members))} of one group have different chance levels "
                         f"{sorted(levels)} (different class counts?)")
    return levels.pop() if levels else None


def _at_chance(low: Any, high: Any, chance: float | None) -> bool:
    return accuracy_verdict(low, high, chance) == "at_chance"


def study_tables(
    per_image: Mapping[str, Mapping[str, Any]],
    groups: pd.DataFrame,
    chance: float | Mapping[str, float] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> StudyTables:
    """Build members, group_summary and group_differences from per-image values and groups.

    Args:
        per_image: checkpoint name -> metric name -> per-image values (the same images, in
            the same order, for every checkpoint and metric).
        groups: the groups table (``group``, ``checkpoint``, ``seed``, ...).
        chance: 1 / number of classes, for all checkpoints or by checkpoint name; without it
            accuracy gets no verdict and no model counts as at chance.
        n_boot: bootstrap replicates.
        seed: seeds every draw (the same seed gives the same tables).
        level: interval coverage.

    Returns:
        The three tables (see the module docstring). A model whose accuracy interval contains
        chance makes its deletion and order metrics ``not_testable`` (the group's by the group
        interval, each seed's by its own).

    Raises:
        ValueError: checkpoints missing on either side, values of different lengths, a
            non-finite value, a metric some members of a group lack, or chance levels that
            differ inside a group.
    """
    arrays, n_images = _checked_inputs(per_image, groups)
    boot = TwoLevelBootstrap(n_images, n_boot, seed, level)
    order = list(dict.fromkeys(str(g) for g in groups["group"]))
    member_rows, summary_rows = [], []
    stacked: dict[str, dict[str, np.ndarray]] = {}  # group -> metric -> [n_seeds, n_images]
    estimates: dict[str, dict[str, GroupEstimate]] = {}
    for group in order:
        rows = groups[groups["group"].astype(str) == group]
        members = [str(c) for c in rows["checkpoint"]]
        metrics = sorted(set().union(*(arrays[m] for m in members)), key=_metric_key)
        for metric in metrics:
            lacking = [m for m in members if metric not in arrays[m]]
            if lacking:
                raise ValueError(f"group {group!r}: checkpoints {', '.join(map(repr, lacking))} lack the metric "
                                 f"{metric!r} that other members have; evaluate every member alike")
        group_chance = _group_chance(members, chance)
        stacked[group] = {m: np.stack([arrays[c][m] for c in members]) for m in metrics}
        estimates[group] = {m: boot.estimate(values, group) for m, values in stacked[group].items()}
        accuracy: GroupEstimate | None = estimates[group].get("accuracy")
        if accuracy is None:  # no accuracy measured: no model counts as at chance
            group_at_chance, seed_at_chance = False, [False] * len(members)
        else:
            group_at_chance = _at_chance(accuracy.ci_low, accuracy.ci_high, group_chance)
            seed_at_chance = [_at_chance(lo, hi, group_chance)
                              for lo, hi in zip(accuracy.seed_ci_low, accuracy.seed_ci_high)]
        for metric, est in estimates[group].items():
            seed_verdicts = [group_verdict(metric, lo, hi, group_chance, at)
                             for lo, hi, at in zip(est.seed_ci_low, est.seed_ci_high, seed_at_chance)]
            for (_, row), value, lo, hi, verdict in zip(rows.iterrows(), est.seed_means, est.seed_ci_low,
                                                        est.seed_ci_high, seed_verdicts):
                member_rows.append({"group": group, "checkpoint": str(row["checkpoint"]), "seed": row["seed"],
                                    "metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "verdict": verdict})
            verdict = group_verdict(metric, est.ci_low, est.ci_high, group_chance, group_at_chance)
            summary_rows.append({"group": group, "metric": metric, "mean": est.mean, "std": est.std,
                                 "n_seeds": est.n_seeds, "ci_low": est.ci_low, "ci_high": est.ci_high,
                                 "verdict": verdict, "seeds_agreeing": seeds_agreeing(verdict, seed_verdicts),
                                 "training_variance_measured": est.training_variance_measured})
    difference_rows = []
    for i, group_a in enumerate(order):
        for group_b in order[i + 1:]:
            for metric in (m for m in stacked[group_a] if m in stacked[group_b]):
                d = boot.difference(stacked[group_a][metric], stacked[group_b][metric], group_a, group_b)
                difference_rows.append({"group_a": group_a, "group_b": group_b, "metric": metric, "diff": d.diff,
                                        "ci_low": d.ci_low, "ci_high": d.ci_high,
                                        "verdict": difference_verdict(d.ci_low, d.ci_high),
                                        "n_seeds_a": d.n_seeds_a, "n_seeds_b": d.n_seeds_b})
    members = pd.DataFrame(member_rows, columns=list(MEMBER_COLUMNS))
    members["seed"] = members["seed"].astype("Int64")
    return StudyTables(
        members=members,
        group_summary=pd.DataFrame(summary_rows, columns=list(SUMMARY_COLUMNS)),
        group_differences=pd.DataFrame(difference_rows, columns=list(DIFFERENCE_COLUMNS)),
    )


def read_study_tables(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Read groups.csv and group_summary.csv (required) and members.csv and group_differences.csv (when present).

    Args:
        folder: a study folder.

    Returns:
        File name -> table.

    Raises:
        ValueError: the folder or a required file is missing, unreadable, or lacks columns.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"study folder not found: {folder}")
    needed = {GROUPS_FILE: ("group", "checkpoint", "seed"), SUMMARY_FILE: SUMMARY_COLUMNS,
              MEMBERS_FILE: MEMBER_COLUMNS, DIFFERENCES_FILE: DIFFERENCE_COLUMNS}
    tables: dict[str, pd.DataFrame] = {}
    for name, columns in needed.items():
        path = folder / name
        if not path.is_file():
            if name in (GROUPS_FILE, SUMMARY_FILE):
                raise ValueError(f"{folder} is not a study folder: it has no {name}")
            continue
        try:
            table = pd.read_csv(path, keep_default_na=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
            raise ValueError(f"{path} is not a readable table: {str(err).splitlines()[0] if str(err) else err}") from None
        lacking = [c for c in columns if c not in table.columns]
        if lacking:
            raise ValueError(f"{path} lacks the columns {lacking}; was it written by this version of ersm-eval?")
        tables[name] = table
    return tables
