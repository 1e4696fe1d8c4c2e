"""Regrouping run folders by checkpoint: one :class:`Run` per model.

A comparison writes one folder per evaluation (deletion and sparsity per
checkpoint, occlusion for all checkpoints together). The report reads best with
one run per model holding all of that model's tables; this module regroups the
tables by their ``checkpoint`` column.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.tables import Run

__all__ = ["combine_by_checkpoint"]


def combine_by_checkpoint(runs: list[Run]) -> list[Run]:
    """One Run per distinct ``checkpoint`` value across all tables, in order of first appearance.

    Each combined run holds the rows of every table that belong to its checkpoint,
    the summary.json of the first single-checkpoint run for it (or of the first run
    mentioning it), the gallery maps of the run that has them, every folder its rows come
    from (``sources``) and the summary.json of each of those folders (``summaries``).
    """
    order: list[str] = []
    tables: dict[str, dict[str, list[pd.DataFrame]]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    maps: dict[str, Any] = {}
    sources: dict[str, Run] = {}
    folders: dict[str, list] = {}
    recorded: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        names_here: list[str] = []
        for name, table in run.tables.items():
            for ckpt in pd.unique(table["checkpoint"]):
                ckpt = str(ckpt)
                if ckpt not in order:
                    order.append(ckpt)
                if ckpt not in names_here:
                    names_here.append(ckpt)
                part = table[table["checkpoint"].astype(str) == ckpt]
                tables.setdefault(ckpt, {}).setdefault(name, []).append(part)
        for ckpt in names_here:
            sources.setdefault(ckpt, run)
            for folder in run.folders:
                if folder not in folders.setdefault(ckpt, []):
                    folders[ckpt].append(folder)
            for summary in run.all_summaries:
                if not any(summary is seen for seen in recorded.setdefault(ckpt, [])):
                    recorded[ckpt].append(summary)
            if len(names_here) == 1 and ckpt not in summaries:
                summaries[ckpt] = run.summary
            if len(names_here) == 1 and run.maps is not None and ckpt not in maps:
                maps[ckpt] = run.maps
    combined = []
    for ckpt in order:
        merged = {name: pd.concat(parts, ignore_index=True) for name, parts in tables[ckpt].items()}
        src = sources[ckpt]
        combined.append(Run(
            path=src.path,
            label=ckpt,
            summary={**summaries.get(ckpt, src.summary), "label": ckpt},
            tables=merged,
            maps=maps.get(ckpt),
            notes=list(src.notes),
            sources=folders[ckpt],
            summaries=recorded[ckpt],
        ))
    return combined
