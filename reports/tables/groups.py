"""Runs shown as models: display labels, stacked tables, and what each model's folders recorded.

A model may be evaluated in several folders (deletion, occlusion, sparsity) and an occlusion
folder may hold several models; :func:`series_labels` names each (run, checkpoint) pair and
:func:`model_groups` gathers the pairs shown as one model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ersm_eval.verdicts import ChanceTest, chance_test, chance_test_from_record
from reports.tables.csv_checks import KNOWN_TABLES
from reports.tables.run import ReportError, Run

__all__ = [
    "HEADLINE_LOCALIZATION",
    "Group",
    "model_groups",
    "model_accuracy_of",
    "recorded",
    "recorded_chance_test",
    "rows_for",
    "series_labels",
    "stack",
]

# (metric, threshold) pairs of sparsity_summary.csv in the headline localization table; None: any threshold
HEADLINE_LOCALIZATION = (("box_accuracy", None), ("iou", 0.5), ("mass_in_object", None), ("keep_mass_in_object", None),
                         ("pointing_game", None))

def _short(checkpoint: str) -> str:
    name = checkpoint.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".pt", ".pth", ".safetensors", ".ckpt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def series_labels(runs: list[Run]) -> dict[tuple[str, str], str]:
    """Display label of every (run label, checkpoint) pair found in the runs' tables.

    A run with one checkpoint is shown under its label; a run comparing several
    checkpoints (occlusion) shows each under its ``checkpoint`` value (file stem for a
    path). Equal display labels are the same model: an occlusion run's "ERSM" line and
    the "ERSM" deletion run end up in one series and one summary row.
    """
    pairs: dict[str, list[str]] = {}
    for run in runs:
        found = pairs.setdefault(run.label, [])
        for table in run.tables.values():
            for ckpt in pd.unique(table["checkpoint"]):
                if ckpt not in found:
                    found.append(ckpt)
    labels: dict[tuple[str, str], str] = {}
    for run_label, ckpts in pairs.items():
        shorts = [_short(c) for c in ckpts]
        if len(set(shorts)) < len(shorts):
            shorts = list(ckpts)
        for ckpt, short in zip(ckpts, shorts):
            labels[(run_label, ckpt)] = run_label if len(ckpts) == 1 else short
    return labels


def stack(runs: list[Run], name: str, labels: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Table ``name`` of every run that has it, stacked, with ``run`` and ``series`` columns first.

    Returns an empty frame (with those columns) when no run has the table.
    """
    labels = labels if labels is not None else series_labels(runs)
    parts = []
    for run in runs:
        table = run.table(name)
        if table is None:
            continue
        table = table.copy()
        table.insert(0, "series", [labels[(run.label, c)] for c in table["checkpoint"]])
        table.insert(0, "run", run.label)
        parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["run", "series", *KNOWN_TABLES[name]])
    return pd.concat(parts, ignore_index=True)


Group = list[tuple[Run, str]]  # the (run, checkpoint) pairs shown as one model


def model_groups(runs: list[Run], labels: dict[tuple[str, str], str]) -> dict[str, Group]:
    """Display label → the (run, checkpoint) pairs shown under it, in order of appearance."""
    groups: dict[str, Group] = {}
    for (run_label, ckpt), model in labels.items():
        groups.setdefault(model, []).extend((run, ckpt) for run in runs if run.label == run_label)
    return groups


def rows_for(group: Group, name: str) -> pd.DataFrame | None:
    """Rows of table ``name`` for the first (run, checkpoint) pair of the group that has them."""
    for run, checkpoint in group:
        table = run.table(name)
        if table is not None:
            rows = table[table["checkpoint"] == checkpoint]
            if not rows.empty:
                return rows
    return None


def _n_classes(group: Group) -> int | None:
    for run, _ in group:
        if len(run.class_names) >= 2:
            return len(run.class_names)
    classes = rows_for(group, "per_class_keep.csv")
    return len(classes) if classes is not None and len(classes) >= 2 else None


def model_accuracy_of(group: Group) -> tuple[ChanceTest, float | None] | None:
    """The model's own test accuracy (as trained, with its gate) against chance, from the
    sparsity run's per_image.csv, and the training background's spurious correlation when
    the checkpoint records one; None when there is no per-image record or class count."""
    images = rows_for(group, "per_image.csv")
    n_classes = _n_classes(group)
    if images is None or images.empty or n_classes is None:
        return None
    spurious = None
    for run, _ in group:
        if run.table("per_image.csv") is None:
            continue
        dataset, provenance = run.summary["dataset"], run.summary["provenance"]
        # the synthetic data's spurious background exists in its training split only
        if dataset.get("name") != "synthetic" or dataset.get("split") != "test":
            continue
        options = provenance.get("dataset_options")
        if isinstance(options, dict) and isinstance(options.get("spurious"), (int, float)):
            spurious = float(options["spurious"])
            break
    return chance_test(int(images["correct"].sum()), len(images), n_classes), spurious



def recorded(group: Group, *keys: str) -> Any:
    """The value at ``keys`` in the first summary.json of this model's folders that records one, or None
    (the deletion run records the chance test and the verdict sentences, the sparsity run the boxes)."""
    for run, _ in group:
        value = run.recorded(*keys)
        if value is not None:
            return value
    return None


def recorded_chance_test(group: Group) -> ChanceTest | None:
    """The chance test the model's deletion run recorded in summary.json, or None when it has none."""
    for run, _ in group:
        curves = run.table("deletion_curves.csv")
        if curves is None or len(pd.unique(curves["checkpoint"])) != 1:
            continue
        try:
            test = chance_test_from_record(run.recorded("chance_test"))
        except ValueError as err:
            raise ReportError(f"{run.path}: {err}; re-run the deletion evaluation") from None
        if test is not None:
            return test
    return None
