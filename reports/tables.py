"""Load and check one evaluation run folder: its CSVs, summary.json and maps.npz.

A run folder is what ``ersm-eval deletion|occlusion|sparsity`` writes;
the file names and columns are the contract in :mod:`ersm_eval.schema`. Nothing
here needs a model: the report is rebuilt from these files alone.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ersm_core.errors import ERSMError
from ersm_core.files import read_npy_header
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES
from ersm_eval.verdicts import ChanceTest, chance_test

__all__ = [
    "model_accuracy_of",
    "DELETION_SUMMARY_NEW",
    "HEADLINE_LOCALIZATION",
    "KNOWN_TABLES",
    "LOCALIZATION_METRICS",
    "MAP_KEYS",
    "MAP_NAMES",
    "ReportError",
    "Run",
    "is_localization_metric",
    "localization_rows",
    "load_run",
    "series_labels",
    "typed_summary",
    "stack",
    "unique_labels",
    "as_runs",
    "chance_test_of",
    "clean_path",
    "model_groups",
    "rows_for",
]

# columns added to deletion_summary.csv by the verdict rules (ΔAUC to random, smallest gap, step
# counts, verdict); a folder written before them lacks them and its report says "not measured"
DELETION_SUMMARY_NEW = (
    "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high", "auc_diff_p_value",
    "prob_auc", "prob_auc_diff", "prob_auc_diff_ci_low", "prob_auc_diff_ci_high", "prob_auc_diff_p_value",
    "min_gap_to_random", "min_gap_k", "min_gap_ci_low", "min_gap_ci_high",
    "steps_above_random", "steps_below_random", "n_steps", "verdict",
)
_OPTIONAL = {"deletion_summary.csv": DELETION_SUMMARY_NEW}

# every table a report reads: the schema's, plus the two verdict tables for as long as the
# schema does not list them yet (the schema's columns win once it does)
KNOWN_TABLES: dict[str, list[str]] = {
    **TABLES,
    **{name: cols for name, cols in {
        "localization.csv": ["checkpoint", "map", "metric", "value", "ci_low", "ci_high",
                             "excess", "excess_ci_low", "excess_ci_high", "verdict"],
        "energy_diagnostics.csv": ["checkpoint", "metric", "value", "ci_low", "ci_high"],
    }.items() if name not in TABLES},
}
_KNOWN_COLUMNS = {name: list(dict.fromkeys([*cols, *_OPTIONAL.get(name, ())])) for name, cols in KNOWN_TABLES.items()}

# columns holding text; "correct" is boolean; every other known column is numeric
_TEXT = {"checkpoint", "ranking", "ranking_a", "ranking_b", "test", "fill", "pattern", "map", "metric", "class_name", "failure",
         "verdict"}
_BOOL = {"correct"}
_NAN_WORDS = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}

# maps.npz: required keys, then optional ones (ersm_eval.sparsity)
MAP_KEYS = {"required": ("index", "image", "label", "prediction"), "optional": ("keep", "energy", "cam", "mask")}

# sparsity_summary metrics that compare a map with the object mask or box, in display order
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
        sources: every folder the tables come from (several when folders are regrouped by
            checkpoint); empty means just ``path``.
    """

    path: Path
    label: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    maps: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)

    @property
    def folders(self) -> list[Path]:
        """The input folders of this run (``sources``, else ``path``)."""
        return list(self.sources) or [self.path]

    def table(self, name: str) -> pd.DataFrame | None:
        """The table ``name`` (a schema file name) or None when the folder has none."""
        return self.tables.get(name)

    @property
    def typed(self) -> "RunSummary | None":
        """summary.json as a :class:`~ersm_eval.results.RunSummary` when it follows the current
        schema; None for folders written before it (read by :func:`_legacy`)."""
        return typed_summary(self.summary)

    @property
    def class_names(self) -> list[str]:
        """The class names the run recorded, or []."""
        typed = self.typed
        names = typed.class_names if typed is not None else _legacy(self.summary, "class_names")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def variant(self) -> str | None:
        """The evaluated model's variant (baseline, ersm_full, ...), if recorded."""
        typed = self.typed
        value = typed.model.variant if typed is not None else _legacy(self.summary, "variant")
        return str(value) if isinstance(value, str) else None

    @property
    def chance(self) -> dict | None:
        """The chance test a deletion run recorded, if any."""
        typed = self.typed
        found = typed.chance_test if typed is not None else _legacy(self.summary, "chance_test")
        return found if isinstance(found, dict) else None

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


def typed_summary(summary: dict[str, Any]) -> "RunSummary | None":
    """A summary.json's content as a :class:`~ersm_eval.results.RunSummary` when it follows the
    current schema; None for folders written before it."""
    from ersm_eval.results import SUMMARY_SCHEMA_VERSION, RunSummary, check_summary

    if not isinstance(summary, dict) or summary.get("schema_version") != SUMMARY_SCHEMA_VERSION or check_summary(summary):
        return None
    return RunSummary.from_dict(summary)


def _legacy(summary: dict[str, Any], key: str) -> Any:
    """``class_names``, ``variant`` or ``chance_test`` from a summary.json written before the
    versioned schema, at the places those versions wrote them (the top level, the model
    config, the first checkpoint of an occlusion run, the deletion block)."""
    places = [summary, summary.get("config"), summary.get("model"), summary.get("deletion")]
    checkpoints = summary.get("checkpoints")
    if isinstance(checkpoints, list) and checkpoints and isinstance(checkpoints[0], dict):
        places += [checkpoints[0], checkpoints[0].get("config")]
    for place in places:
        if isinstance(place, dict) and key in place:
            return place[key]
    return None


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
        "n_seeds": _COUNT, "auc": _PROB, "acc_k0": _PROB, "peak_accuracy": _PROB, "peak_k": _COUNT,
        "auc_diff": _DIFF, "auc_diff_ci_low": _DIFF, "auc_diff_ci_high": _DIFF, "auc_diff_p_value": _PROB,
        "prob_auc": _PROB, "prob_auc_diff": _DIFF, "prob_auc_diff_ci_low": _DIFF, "prob_auc_diff_ci_high": _DIFF,
        "prob_auc_diff_p_value": _PROB, "max_gap_to_random": _DIFF, "max_gap_k": _COUNT, "max_gap_ci_low": _DIFF,
        "max_gap_ci_high": _DIFF, "min_gap_to_random": _DIFF, "min_gap_k": _COUNT, "min_gap_ci_low": _DIFF,
        "min_gap_ci_high": _DIFF, "steps_above_random": _COUNT, "steps_below_random": _COUNT, "n_steps": _COUNT,
        "half_accuracy_k": _COUNT},
    "deletion_tests.csv": {"k": _COUNT, "accuracy": _PROB, "random_accuracy": _PROB, "difference": _DIFF,
                           "ci_low": _DIFF, "ci_high": _DIFF, "p_value": _PROB},
    "ranking_agreement.csv": {"n_images": _COUNT, "spearman_mean": _DIFF, "spearman_sd": ("sd", 0.0, None, False),
                              "kendall_mean": _DIFF, "kendall_sd": ("sd", 0.0, None, False),
                              "overlap25_mean": _PROB, "overlap50_mean": _PROB},
    "occlusion.csv": {"n": _COUNT, "accuracy": _PROB, "ci_low": _PROB, "ci_high": _PROB, "mean_true_prob": _PROB},
    "occlusion_summary.csv": {"auc": _PROB, "acc0": _PROB, "diff_auc_to_first": _DIFF, "diff_ci_low": _DIFF,
                              "diff_ci_high": _DIFF},
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


def _read_table(path: Path, name: str, n_tokens: int | None = None) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8")
        _ragged(path, text)
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, csv.Error) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReportError(f"{path}: not a readable CSV ({detail}); re-run the evaluation that writes {name}") from None
    required = [c for c in KNOWN_TABLES[name] if c not in _OPTIONAL.get(name, ())]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ReportError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}; {name} needs {', '.join(required)} "
            "(was it written by an older ersm-eval?)"
        )
    table = raw.copy()
    for column in _OPTIONAL.get(name, ()):
        if column not in table.columns:  # an older folder: measured nowhere
            table[column] = "" if column in _TEXT else np.nan
    for column in raw.columns:
        if column in _TEXT or column not in _KNOWN_COLUMNS[name]:
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


def _check_recorded(path: Path, summary: dict[str, Any], tables: dict[str, pd.DataFrame], empty: set[str]) -> None:
    """Check the tables against what summary.json says was written.

    summary.json's ``"tables"`` is either a list of file names or a mapping of file name to
    row count; a listed table that is gone, or a row count that differs, means the folder was
    edited or truncated after the run.
    """
    recorded = summary.get("tables")
    if isinstance(recorded, list):
        recorded = {str(name): None for name in recorded}
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


_PARTIAL = re.compile(r"\.([^/\\]+?)\.[A-Za-z0-9_]+\.partial(?=$|[/\\])")


def clean_path(text: str) -> str:
    """A path with the temporary name of a folder still being written (``.name.xxxx.partial``)
    replaced by the final name the folder gets when complete."""
    return _PARTIAL.sub(r"\1", str(text))


def _read_summary(path: Path) -> dict[str, Any]:
    """summary.json, read defensively (size, nesting, numbers: :func:`ersm_eval.results.read_json_file`),
    with every field the report reads checked for its type and range."""
    from ersm_eval.results import read_json_file

    data = read_json_file(path, ReportError)
    _check_summary_fields(path, data)
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_summary_fields(path: Path, data: dict[str, Any]) -> None:
    """Refuse a summary.json whose fields read by the report have the wrong type or range."""
    def bad(field_name: str, want: str, value: Any) -> ReportError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ReportError(f"{path}: field {field_name!r} must be {want}, found {shown}; "
                           "the file was edited after the run, re-run the evaluation")

    label = data.get("label")
    if label is not None and not isinstance(label, str):
        raise bad("label", "text", label)
    for name in ("n_images", "world_size"):
        value = data.get(name)
        if value is not None and not (_is_int(value) and value >= 0):
            raise bad(name, "a non-negative integer", value)
    names = data.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", "a list of names", names)
    recorded = data.get("tables")
    if isinstance(recorded, list):
        for i, name in enumerate(recorded):
            if not isinstance(name, str):
                raise bad(f"tables[{i}]", "a file name", name)
    elif isinstance(recorded, dict):
        for name, count in recorded.items():
            if not (_is_int(count) and count >= 0):
                raise bad(f"tables.{name}", "a non-negative row count", count)
    elif recorded is not None:
        raise bad("tables", "a list of file names or a mapping of file name to row count", recorded)
    model = data.get("model")
    if isinstance(model, dict):
        grid = model.get("grid")
        if grid is not None and not (isinstance(grid, list) and len(grid) == 2 and all(_is_int(v) and 1 <= v <= 8192 for v in grid)):
            raise bad("model.grid", "two integers [h, w] between 1 and 8192", grid)
        tokens = model.get("n_tokens")
        if tokens is not None and not (_is_int(tokens) and 1 <= tokens <= 8192 * 8192):
            raise bad("model.n_tokens", "a positive integer", tokens)
    places = [("chance_test", data.get("chance_test"))]
    if isinstance(data.get("deletion"), dict):
        places.append(("deletion.chance_test", data["deletion"].get("chance_test")))
    for where, found in places:
        if found is None:
            continue
        if not isinstance(found, dict):
            raise bad(where, "an object", found)
        for key in ("accuracy", "chance", "ci_low", "ci_high"):
            value = found.get(key)
            nan_ok = key != "chance"  # no accuracy and no interval for zero images
            if not (_is_number(value) and (0.0 <= value <= 1.0 or (nan_ok and value != value))):
                raise bad(f"{where}.{key}", "a number in [0, 1]", value)
        if not (_is_int(found.get("n_images")) and found["n_images"] >= 0):
            raise bad(f"{where}.n_images", "a non-negative integer", found.get("n_images"))
        if not (_is_int(found.get("n_classes")) and found["n_classes"] >= 2):
            raise bad(f"{where}.n_classes", "an integer of at least 2", found.get("n_classes"))


MAPS_MAX_BYTES = 4 * 1024 ** 3  # maps.npz holds a gallery of a few dozen images: megabytes
_DEFLATE_MAX_RATIO = 1100  # deflate expands at most ~1032:1, so a member's declared size cannot exceed this
# maps.npz members: number of dimensions and allowed dtype kinds (b bool, u/i integers, f floats)
_MAP_LAYOUT = {"index": (1, "iu"), "label": (1, "iu"), "prediction": (1, "iu"), "image": (4, "u"),
               "keep": (3, "f"), "energy": (3, "f"), "cam": (3, "f"), "mask": (3, "buif")}


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array of an .npz, from the member headers alone (nothing loaded).

    Each member's declared size must agree with the zip entry's size, and that with the bytes
    actually stored (deflate expands at most ~1000×), so no claim sizes memory by itself.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ReportError(f"{path}: array {key!r} uses an unsupported compression")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size or \
                    info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024:
                raise ReportError(f"{path}: array {key!r} declares {info.file_size} bytes for "
                                  f"{info.compress_size} stored; the file is damaged or not written by ersm-eval")
            with zf.open(info) as fh:
                try:
                    header = read_npy_header(fh)
                except ValueError as err:
                    raise ReportError(f"{path}: array {key!r} has no readable .npy header ({err})") from None
            shape, fortran, dtype, offset, nbytes = (header.shape, header.fortran_order, header.dtype, header.offset,
                                                     header.nbytes)
            if not header.plain_numbers:
                raise ReportError(f"{path}: array {key!r} has dtype {dtype}, not plain numbers")
            if offset + nbytes != info.file_size:
                raise ReportError(f"{path}: array {key!r} declares shape {list(shape)} ({nbytes} bytes) but holds "
                                  f"{max(info.file_size - offset, 0)} bytes; the file is damaged or was edited")
            total += nbytes
            if total > MAPS_MAX_BYTES:
                raise ReportError(f"{path}: holds more than {MAPS_MAX_BYTES} bytes of arrays, far more than a "
                                  "gallery; the file is damaged or not written by ersm-eval")
            out[key] = (tuple(int(d) for d in shape), dtype)
    return out


def _check_map_headers(path: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]], summary: dict[str, Any]) -> None:
    """Shapes and dtypes of maps.npz against each other and against summary.json, before loading."""
    missing = [k for k in MAP_KEYS["required"] if k not in headers]
    if missing:
        raise ReportError(f"{path}: missing array{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    for key, (ndim, kinds) in _MAP_LAYOUT.items():
        if key in headers:
            shape, dtype = headers[key]
            if dtype.kind not in kinds or (key == "image" and dtype != np.uint8):
                raise ReportError(f"{path}: array {key!r} has dtype {dtype}, expected "
                                  f"{'uint8' if key == 'image' else 'integers' if kinds == 'iu' else 'floats'}")
            if len(shape) != ndim:
                raise ReportError(f"{path}: array {key!r} must have {ndim} dimension(s), found shape {list(shape)}")
    n = headers["index"][0][0]
    limit = summary.get("n_images") if _is_int(summary.get("n_images")) else None
    if limit is None and isinstance(summary.get("dataset"), dict) and _is_int(summary["dataset"].get("n_images")):
        limit = summary["dataset"]["n_images"]
    if limit is not None and n > limit:
        raise ReportError(f"{path}: {n} gallery images, but summary.json records {limit} images evaluated")
    image = headers["image"][0]
    if image[-1] != 3 or image[1] != image[2] or not 1 <= image[1] <= 8192:
        raise ReportError(f"{path}: array 'image' must have shape [n, S, S, 3] with S at most 8192, found {list(image)}")
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    grid = model.get("grid") if isinstance(model.get("grid"), list) else None
    for key in ("index", "label", "prediction", "image", "keep", "energy", "cam", "mask"):
        if key not in headers:
            continue
        shape = headers[key][0]
        if shape[0] != n:
            raise ReportError(f"{path}: array {key!r} must hold {n} entries like 'index', found shape {list(shape)}")
        if key in MAP_NAMES and grid is not None and list(shape[1:]) != grid:
            raise ReportError(f"{path}: array {key!r} must hold [n, h, w] maps on the token grid {grid} of summary.json, "
                              f"found shape {list(shape)}")
        if key in MAP_NAMES and not all(1 <= d <= 8192 for d in shape[1:]):
            raise ReportError(f"{path}: array {key!r} has map size {list(shape[1:])}, outside 1 to 8192")
        if key == "mask" and shape[1:] != image[1:3]:
            raise ReportError(f"{path}: array 'mask' must match the image size {list(image[1:3])}, found {list(shape[1:])}")


def _read_maps(path: Path, summary: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """maps.npz: every member's header checked (shape, dtype, size against the file and summary.json)
    before anything is loaded, then the values (finite maps, non-negative indices)."""
    try:
        headers = _npz_headers(path)
        _check_map_headers(path, headers, summary or {})
        with np.load(path, allow_pickle=False) as npz:
            maps = {key: npz[key] for key in npz.files if key in _MAP_LAYOUT}
    except ReportError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as err:
        detail = str(err).splitlines()[0] if str(err) else repr(err)
        raise ReportError(f"{path}: not a readable .npz file ({detail})") from None
    for key in ("keep", "energy", "cam", "mask"):
        if key in maps and not np.isfinite(maps[key]).all():
            bad = int(np.flatnonzero(~np.isfinite(maps[key]).reshape(len(maps[key]), -1).all(axis=1))[0])
            raise ReportError(f"{path}: array {key!r} holds NaN or infinite values (gallery image {bad}); "
                              "the file is damaged or was edited, re-run the evaluation")
    for key in ("index", "label", "prediction"):
        if maps[key].size and int(maps[key].min()) < 0:
            raise ReportError(f"{path}: array {key!r} holds a negative value; the file is damaged or was edited")
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
    empty: set[str] = set()
    summary: dict[str, Any] = {}
    has_summary = (path / SUMMARY_JSON).is_file()
    if has_summary:
        summary = _read_summary(path / SUMMARY_JSON)
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    n_tokens = model.get("n_tokens") if _is_int(model.get("n_tokens")) else None
    for name in KNOWN_TABLES:
        file = path / name
        if file.is_file():
            table = _read_table(file, name, n_tokens)
            if table.empty:
                notes.append(f"{name} has no rows and was skipped")
                empty.add(name)
            else:
                tables[name] = table
    if not tables:
        if notes:
            raise ReportError(f"{path}: every table is empty ({'; '.join(notes)})")
        raise ReportError(
            f"{path} holds none of the tables a report is built from; expected at least one of "
            f"{', '.join(TABLES)} (run `ersm-eval deletion`, `occlusion` or `sparsity` with this folder as output)"
        )
    if has_summary:
        _check_recorded(path, summary, tables, empty)
    else:
        notes.append(f"no {SUMMARY_JSON}: provenance and class names are unknown")
    maps = _read_maps(path / MAPS_NPZ, summary) if (path / MAPS_NPZ).is_file() else None
    given = label or summary.get("label") or clean_path(path.resolve().name)
    return Run(path=path, label=str(given), summary=summary, tables=tables, maps=maps, notes=notes, sources=[path])


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
        return pd.DataFrame(columns=["run", "series", *_KNOWN_COLUMNS[name]])
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
        value = (run.chance or {}).get("n_classes")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
            return value
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
        typed = run.typed
        if typed is None or run.table("per_image.csv") is None:
            continue
        # the synthetic data's spurious background exists in its training split only
        if typed.dataset.get("name") != "synthetic" or typed.dataset.get("split") != "test":
            continue
        options = typed.provenance.get("dataset_options") if isinstance(typed.provenance, dict) else None
        if isinstance(options, dict) and isinstance(options.get("spurious"), (int, float)):
            spurious = float(options["spurious"])
            break
    correct = images["correct"].astype(str).str.lower().isin(("true", "1", "1.0"))
    return chance_test(int(correct.sum()), len(images), n_classes), spurious


def chance_test_of(group: Group) -> ChanceTest | None:
    """The model's accuracy before any deletion against chance, or None when it cannot be told.

    Read from the chance test a deletion run records in summary.json; for a folder written
    before it, the test of :mod:`ersm_eval.verdicts` is applied to the k = 0 row of
    deletion_curves.csv, else to the sparsity run's accuracy (per_image.csv), when the number
    of classes is known.
    """
    for run, ckpt in group:
        if run.table("deletion_curves.csv") is None:
            continue
        found = run.chance
        if found is not None and len(pd.unique(run.table("deletion_curves.csv")["checkpoint"])) == 1:
            try:
                return ChanceTest(*(float(found[k]) for k in ("accuracy", "ci_low", "ci_high", "chance")),
                                  int(found["n_images"]), int(found["n_classes"]))
            except (TypeError, ValueError, KeyError, OverflowError):
                raise ReportError(f"{run.path / SUMMARY_JSON}: the recorded chance test is malformed ({found!r})") from None
    n_classes = _n_classes(group)
    if n_classes is None:
        return None
    curves = rows_for(group, "deletion_curves.csv")
    if curves is not None:
        first = curves[(curves["k"] == 0) & curves["n_images"].notna() & curves["accuracy"].notna()]
        if not first.empty:
            n = int(first["n_images"].iloc[0])
            return chance_test(int(round(float(first["accuracy"].iloc[0]) * n)), n, n_classes)
    images = rows_for(group, "per_image.csv")
    if images is not None:
        return chance_test(int(images["correct"].sum()), len(images), n_classes)
    return None
