"""Load and check one evaluation run folder: its CSVs, summary.json and maps.npz.

A run folder is what ``ersm-eval deletion|occlusion|sparsity`` writes (SPEC §6);
the file names and columns are the contract in :mod:`ersm_eval.schema`. Nothing
here needs a model: the report is rebuilt from these files alone.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ersm_core.errors import ERSMError
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES, check_columns

__all__ = [
    "HEADLINE_LOCALIZATION",
    "LOCALIZATION_METRICS",
    "MAP_KEYS",
    "MAP_NAMES",
    "ReportError",
    "Run",
    "find_key",
    "is_localization_metric",
    "localization_rows",
    "load_run",
    "series_labels",
    "stack",
    "unique_labels",
    "as_runs",
]

# columns holding text; "correct" is boolean; every other schema column is numeric
_TEXT = {"checkpoint", "ranking", "ranking_a", "ranking_b", "test", "fill", "pattern", "map", "metric", "class_name", "failure"}
_BOOL = {"correct"}
_NAN_WORDS = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}

# maps.npz: required keys, then optional ones (SPEC §4, ersm_eval.sparsity)
MAP_KEYS = {"required": ("index", "image", "label", "prediction"), "optional": ("keep", "energy", "cam", "mask")}

# sparsity_summary metrics that compare a map with the object mask or box (SPEC §4), in display order
LOCALIZATION_METRICS = (
    "box_accuracy", "box_gt_known", "pointing_game", "iou", "iou_absolute", "box_iou", "mass_in_object", "keep_mass_in_object",
)
# (metric, threshold) pairs of the headline summary table; None: whatever threshold the row has
HEADLINE_LOCALIZATION = (("box_accuracy", None), ("iou", 0.5), ("mass_in_object", None), ("keep_mass_in_object", None),
                         ("pointing_game", None))
MAP_NAMES = ("keep", "energy", "cam")  # the maps sparsity_summary rows refer to


def is_localization_metric(metric: str) -> bool:
    """True for a sparsity_summary metric comparing a map with the object mask or box."""
    return metric in LOCALIZATION_METRICS or any(hint in metric for hint in ("box", "iou", "object", "pointing"))


def localization_rows(sparsity_summary: pd.DataFrame) -> pd.DataFrame:
    """The localization rows of sparsity_summary (map keep/energy/cam), sorted, with a display ``name``.

    ``name`` is the metric, with ``@ threshold`` added where the same metric appears at
    several thresholds (e.g. IoU at 0.25, 0.5 and 0.75 of the map's max).
    """
    rows = sparsity_summary[sparsity_summary["map"].isin(MAP_NAMES) & sparsity_summary["metric"].map(is_localization_metric)]
    if rows.empty:
        return rows.assign(name=pd.Series(dtype=str))
    several = rows.groupby("metric")["threshold"].nunique()
    names = [f"{m} @ {t:g}" if several.get(m, 0) > 1 and np.isfinite(t) else m for m, t in zip(rows["metric"], rows["threshold"])]
    order = {m: i for i, m in enumerate(LOCALIZATION_METRICS)}
    rows = rows.assign(
        name=names,
        _metric=rows["metric"].map(lambda m: order.get(m, len(order))),
        _map=rows["map"].map(MAP_NAMES.index),
        _t=rows["threshold"].fillna(-1.0),
    )
    return rows.sort_values(["_metric", "metric", "_t", "_map"], kind="stable").drop(columns=["_metric", "_map", "_t"])


class ReportError(ERSMError):
    """A run folder, table or file the report reads is missing or malformed."""


@dataclass
class Run:
    """One evaluation run folder, read back.

    Attributes:
        path: the folder.
        label: summary.json's ``"label"``, else the folder name.
        summary: summary.json's content ({} when the folder has none).
        tables: the schema tables present, keyed by file name (e.g. ``"deletion_curves.csv"``).
        maps: the arrays of maps.npz (gallery images and maps), or None when absent.
        notes: what was skipped while loading (empty tables, no summary), for the report.
    """

    path: Path
    label: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    maps: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)

    def table(self, name: str) -> pd.DataFrame | None:
        """The table ``name`` (a schema file name) or None when the folder has none."""
        return self.tables.get(name)

    @property
    def class_names(self) -> list[str]:
        """summary.json's ``"class_names"`` (searched at any depth), or []."""
        names = find_key(self.summary, "class_names")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def variant(self) -> str | None:
        """The model variant named anywhere in summary.json (``"variant"``), if any."""
        value = find_key(self.summary, "variant")
        return str(value) if isinstance(value, str) else None

    @property
    def is_baseline(self) -> bool:
        """True for a run of the plain baseline (no spatial module)."""
        if self.variant is not None:
            return self.variant == "baseline"
        return self.label.lower().startswith("baseline")

    def class_name(self, index: int) -> str:
        """Name of class ``index`` (the number itself when names are unknown)."""
        names = self.class_names
        return names[index] if 0 <= index < len(names) else str(index)


def find_key(tree: Any, key: str) -> Any:
    """The first value stored under ``key`` in nested dicts/lists (breadth first), or None."""
    queue = [tree]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if key in node:
                return node[key]
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(v for v in node if isinstance(v, (dict, list)))
    return None


def _read_table(path: Path, name: str) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportError(f"{path}: not a readable CSV ({detail}); re-run the evaluation that writes {name}") from None
    missing = check_columns(name, list(raw.columns))
    if missing:
        raise ReportError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}; {name} needs {', '.join(TABLES[name])} "
            "(was it written by an older ersm-eval?)"
        )
    table = raw.copy()
    for column in raw.columns:
        if column in _TEXT or column not in TABLES[name]:
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
        table[column] = values.astype(float)
    return table


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
    return data


def _read_maps(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            maps = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ReportError(f"{path}: not a readable .npz file ({str(err).splitlines()[0] if str(err) else err!r})") from None
    missing = [k for k in MAP_KEYS["required"] if k not in maps]
    if missing:
        raise ReportError(f"{path}: missing array{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    n = len(maps["index"])
    image = maps["image"]
    if image.ndim != 4 or image.shape[-1] != 3 or image.shape[1] != image.shape[2]:
        raise ReportError(f"{path}: array 'image' must have shape [n, S, S, 3], found {list(image.shape)}")
    for key in ("index", "label", "prediction"):
        if maps[key].shape != (n,):
            raise ReportError(f"{path}: array {key!r} must have shape [{n}], found {list(maps[key].shape)}")
    for key in ("image", "keep", "energy", "cam", "mask"):
        if key in maps and (maps[key].ndim != (4 if key == "image" else 3) or len(maps[key]) != n):
            raise ReportError(f"{path}: array {key!r} must hold {n} maps [n, h, w], found shape {list(maps[key].shape)}")
    if "mask" in maps and maps["mask"].shape[1:] != image.shape[1:3]:
        raise ReportError(f"{path}: array 'mask' must match the image size {list(image.shape[1:3])}, found {list(maps['mask'].shape[1:])}")
    return maps


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a run folder and check every known table against the schema.

    Args:
        path: folder written by the deletion, occlusion and/or sparsity commands.
        label: name shown in the report; default summary.json's ``"label"`` or the folder name.

    Raises:
        ReportError: the folder is missing or holds none of the known CSVs, a CSV cannot
            be parsed, lacks a required column or has a non-numeric value in a numeric
            column (the message names the file and the column), or summary.json /
            maps.npz are malformed.
    """
    path = Path(path)
    if not path.exists():
        raise ReportError(f"run folder not found: {path}")
    if not path.is_dir():
        raise ReportError(f"{path} is a file; pass the folder an evaluation command wrote into")
    notes: list[str] = []
    tables: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        file = path / name
        if file.is_file():
            table = _read_table(file, name)
            if table.empty:
                notes.append(f"{name} has no rows and was skipped")
            else:
                tables[name] = table
    if not tables:
        if notes:
            raise ReportError(f"{path}: every table is empty ({'; '.join(notes)})")
        raise ReportError(
            f"{path} holds none of the tables a report is built from; expected at least one of "
            f"{', '.join(TABLES)} (run `ersm-eval deletion`, `occlusion` or `sparsity` with this folder as output)"
        )
    summary: dict[str, Any] = {}
    if (path / SUMMARY_JSON).is_file():
        summary = _read_summary(path / SUMMARY_JSON)
    else:
        notes.append(f"no {SUMMARY_JSON}: provenance and class names are unknown")
    maps = _read_maps(path / MAPS_NPZ) if (path / MAPS_NPZ).is_file() else None
    given = label or summary.get("label") or path.resolve().name
    return Run(path=path, label=str(given), summary=summary, tables=tables, maps=maps, notes=notes)


def unique_labels(runs: Iterable[Run]) -> list[Run]:
    """Copies of ``runs`` where no two runs of the same label hold the same table.

    Runs sharing a label are one model evaluated by several commands (a deletion
    folder, a sparsity folder, ...) and stay merged under that label; a run whose
    tables clash with an earlier run of its label is renamed "label (2)", "label (3)".
    """
    held: dict[str, set[str]] = {}
    out = []
    for run in runs:
        label, n = run.label, 1
        while label in held and held[label] & set(run.tables):
            n += 1
            label = f"{run.label} ({n})"
        held.setdefault(label, set()).update(run.tables)
        out.append(run if label == run.label else replace(run, label=label))
    return out


def as_runs(items: Iterable[Run | str | Path]) -> list[Run]:
    """Runs as given, loading any folder path among them with :func:`load_run`."""
    return [item if isinstance(item, Run) else load_run(item) for item in items]


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
        return pd.DataFrame(columns=["run", "series", *TABLES[name]])
    return pd.concat(parts, ignore_index=True)
