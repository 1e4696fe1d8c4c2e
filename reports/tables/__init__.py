"""Reading evaluation run folders back: the tables, summary.json and maps.npz a report is built from.

A run folder is what ``ersm-eval deletion|occlusion|sparsity`` writes; the file names and
columns are the contract in :mod:`ersm_eval.schema`, summary.json follows the current schema
of :mod:`ersm_eval.results`. Nothing here needs a model.

Modules, in reading order: :mod:`~reports.tables.run` (the :class:`Run` and its error),
:mod:`~reports.tables.summary_json`, :mod:`~reports.tables.csv_checks`,
:mod:`~reports.tables.maps_npz`, :mod:`~reports.tables.load` (:func:`load_run`) and
:mod:`~reports.tables.groups` (runs shown as models).
"""

from reports.tables.csv_checks import KNOWN_TABLES
from reports.tables.groups import (
    HEADLINE_LOCALIZATION,
    Group,
    model_accuracy_of,
    model_groups,
    recorded,
    recorded_chance_test,
    rows_for,
    series_labels,
    stack,
)
from reports.tables.load import as_runs, load_run
from reports.tables.maps_npz import MAP_KEYS, MAP_NAMES
from reports.tables.run import ReportError, Run, clean_path, unique_labels
from reports.tables.summary_json import read_summary

__all__ = [
    "HEADLINE_LOCALIZATION",
    "KNOWN_TABLES",
    "MAP_KEYS",
    "MAP_NAMES",
    "Group",
    "ReportError",
    "Run",
    "as_runs",
    "clean_path",
    "load_run",
    "model_accuracy_of",
    "model_groups",
    "read_summary",
    "recorded",
    "recorded_chance_test",
    "rows_for",
    "series_labels",
    "stack",
    "unique_labels",
]
