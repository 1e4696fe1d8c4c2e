"""One evaluation run folder, read back: :class:`Run`, and the error every reader raises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ersm_core.errors import ERSMError

__all__ = ["ReportError", "Run", "clean_path", "unique_labels"]


class ReportError(ERSMError):
    """A run folder, table or file the report reads is missing or malformed."""


@dataclass
class Run:
    """One evaluation run folder, read back.

    Attributes:
        path: the folder.
        label: summary.json's ``"label"``, else the folder name.
        summary: summary.json's content, following the current schema.
        tables: the schema tables present, keyed by file name (e.g. ``"deletion_curves.csv"``).
        maps: the arrays of maps.npz (gallery images and maps), or None when absent.
        notes: what was skipped while loading (empty tables), for the report.
        sources: every folder the tables come from (several when folders are regrouped by
            checkpoint); empty means just ``path``.
        summaries: the summary.json of every source folder (the deletion run's verdicts, the
            sparsity run's localization record); empty means just ``summary``.
    """

    path: Path
    label: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    maps: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def folders(self) -> list[Path]:
        """The input folders of this run (``sources``, else ``path``)."""
        return list(self.sources) or [self.path]

    @property
    def all_summaries(self) -> list[dict[str, Any]]:
        """The summary.json of every folder of this run (``summaries``, else ``[summary]``)."""
        return list(self.summaries) or [self.summary]

    def table(self, name: str) -> pd.DataFrame | None:
        """The table ``name`` (a schema file name) or None when the folder has none."""
        return self.tables.get(name)

    def recorded(self, *keys: str) -> Any:
        """The value at ``keys`` (a path into summary.json, e.g. ``"evaluation", "localization"``) in the
        first summary.json of this run that records one (not None, not empty), or None."""
        for summary in self.all_summaries:
            value: Any = summary
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value not in (None, {}, [], ""):
                return value
        return None

    @property
    def class_names(self) -> list[str]:
        """The class names the run recorded, or []."""
        names = self.summary.get("class_names")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def variant(self) -> str | None:
        """The evaluated model's variant (baseline, ersm_full, ...), if recorded."""
        model = self.summary.get("model")
        value = model.get("variant") if isinstance(model, dict) else None
        return value if isinstance(value, str) else None

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


_PARTIAL = re.compile(r"\.([^/\\]+?)\.[A-Za-z0-9_]+\.partial(?=$|[/\\])")


def clean_path(text: str) -> str:
    """A path with the temporary name of a folder still being written (``.name.xxxx.partial``)
    replaced by the final name the folder gets when complete."""
    return _PARTIAL.sub(r"\1", str(text))


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
