"""summary.json of a run folder: read defensively, held to the current schema.

A run folder's summary.json must follow the schema this version of ersm-eval writes
(:data:`ersm_eval.results.SUMMARY_SCHEMA_VERSION`); a folder written by an older version is
refused with one message saying to re-run the evaluation, never read at guessed places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ersm_eval.results import SUMMARY_SCHEMA_VERSION, check_summary, read_json_file
from ersm_eval.schema import SUMMARY_JSON
from reports.tables.run import ReportError

__all__ = ["is_int", "read_summary"]


def is_int(value: Any) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json, read defensively (size, nesting, numbers: :func:`ersm_eval.results.read_json_file`)
    and checked against the current schema and the ranges the report relies on.

    Raises:
        ReportError: the file is unreadable, follows an older schema (re-run the evaluation), or
            has a field of the wrong type or range (edited after the run).
    """
    data = read_json_file(path, ReportError)
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SUMMARY_SCHEMA_VERSION:
        written = f"schema version {version}" if is_int(version) else "no schema version"
        raise ReportError(f"{path}: written by an older ersm-eval ({written}; this version reads version "
                          f"{SUMMARY_SCHEMA_VERSION}); re-run the evaluation that wrote {path.parent.name}")
    problems = check_summary(data)
    if problems:
        where = problems[0].split(" ", 1)[0]  # the field the schema's first complaint is about
        raise ReportError(f"{path}: field {where!r} does not follow the {SUMMARY_JSON} schema ({problems[0]}); "
                          "the file was edited after the run, re-run the evaluation")
    _check_ranges(path, data)
    return data


def _check_ranges(path: Path, data: dict[str, Any]) -> None:
    """Refuse the values of a schema-valid summary.json that the report cannot use (counts,
    grid, chance test outside their ranges)."""
    def bad(field_name: str, want: str, value: Any) -> ReportError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ReportError(f"{path}: field {field_name!r} must be {want}, found {shown}; "
                           "the file was edited after the run, re-run the evaluation")

    if not (is_int(data.get("world_size")) and data["world_size"] >= 1):
        raise bad("world_size", "a positive integer", data.get("world_size"))
    for name, count in data["tables"].items():
        if not (is_int(count) and count >= 0):
            raise bad(f"tables.{name}", "a non-negative row count", count)
    grid = data["model"]["grid"]
    if not (len(grid) == 2 and all(1 <= v <= 8192 for v in grid)):
        raise bad("model.grid", "two integers [h, w] between 1 and 8192", grid)
    if data["model"]["n_tokens"] > 8192 * 8192:
        raise bad("model.n_tokens", "a positive integer", data["model"]["n_tokens"])
    found = data.get("chance_test")
    if found is None:
        return
    if not isinstance(found, dict):
        raise bad("chance_test", "an object", found)
    for key in ("accuracy", "chance", "ci_low", "ci_high"):
        value = found.get(key)
        nan_ok = key != "chance"  # no accuracy and no interval for zero images
        if not (_is_number(value) and (0.0 <= value <= 1.0 or (nan_ok and value != value))):
            raise bad(f"chance_test.{key}", "a number in [0, 1]", value)
    if not (is_int(found.get("n_images")) and found["n_images"] >= 0):
        raise bad("chance_test.n_images", "a non-negative integer", found.get("n_images"))
    if not (is_int(found.get("n_classes")) and found["n_classes"] >= 2):
        raise bad("chance_test.n_classes", "an integer of at least 2", found.get("n_classes"))
