"""Where the report's numbers come from (every input folder once, with its summary.json), and the
claims a caller asks the report to show."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from ersm_eval.schema import SUMMARY_JSON
from ersm_eval.verdicts import NOT_MEASURED
from reports.tables import KNOWN_TABLES, ReportError, Run, clean_path, read_summary

__all__ = ["CLAIM_VERDICTS", "claim_rows", "provenance"]

CLAIM_VERDICTS = ("yes", "no", "partly", NOT_MEASURED)


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(tree, dict):
        out = []
        for key, value in tree.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out or [(prefix, "{}")]
    if isinstance(tree, list):
        if all(not isinstance(v, (dict, list)) for v in tree):
            shown = ", ".join(map(str, tree[:20]))
            return [(prefix, shown + (f", … ({len(tree) - 20} more)" if len(tree) > 20 else ""))]
        out = []
        for i, value in enumerate(tree):
            out += _flatten(value, f"{prefix}[{i}]")
        return out
    return [(prefix, "" if tree is None else str(tree))]


def _rel(path: Path, out_dir: Path) -> str:
    return clean_path(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())


def _source(summary: dict[str, Any]) -> dict[str, str]:
    """Command, label, checkpoint, its hash, data, images and start time of one run folder."""
    if not summary:
        return dict.fromkeys(("command", "label", "checkpoint", "sha", "data", "images", "started"), "n/a")
    options, dataset = summary["options"], summary["dataset"]
    checkpoint = summary["checkpoint"] or ", ".join(str(c.get("checkpoint", "")) for c in summary["checkpoints"]) \
        or str(options.get("checkpoint") or "")
    data = " / ".join(str(v) for v in (dataset.get("dataset") or options.get("dataset"),
                                       dataset.get("split") or options.get("split")) if v)
    return {
        "command": summary["command"] or "n/a",
        "label": summary["label"] or "n/a",
        "checkpoint": clean_path(checkpoint or "n/a"),
        "sha": summary["checkpoint_sha256"][:12] or "n/a",
        "data": data or "n/a",
        "images": str(summary["n_images"]),
        "started": summary["started"] or "n/a",
    }


def provenance(runs: list[Run], out_dir: Path) -> list[dict[str, Any]]:
    """One entry per input folder (each once, whatever the grouping), with the raw summary.json."""
    seen: dict[Path, dict[str, Any]] = {}
    for run in runs:
        for folder in run.folders:
            key = folder.resolve()
            if key in seen:
                continue
            summary = run.summary if folder == run.path and not run.sources[1:] else {}
            if not summary and (folder / SUMMARY_JSON).is_file():
                try:
                    summary = read_summary(folder / SUMMARY_JSON)  # size, nesting and numbers bounded
                except ReportError:
                    summary = {}
            rel = _rel(folder, out_dir)
            files = [{"name": name, "href": urllib.parse.quote(_rel(folder / name, out_dir), safe="/.-_~")}
                     for name in KNOWN_TABLES if (folder / name).is_file()]
            seen[key] = {
                "folder": "this report's folder" if rel == "." else rel,
                **_source(summary),
                "files": files,
                "items": [(k, clean_path(v)) for k, v in _flatten(summary)] if summary else [],
                "notes": list(run.notes) if folder == run.path else [],
            }
    return list(seen.values())


def claim_rows(claims: list[dict] | None) -> list[dict[str, str]]:
    """Claims as the template shows them; ``supported`` True/False/None reads yes/no/:data:`NOT_MEASURED`.

    Raises:
        ReportError: a claim that is not a dict with a ``claim`` key, or an unknown ``supported``.
    """
    out = []
    for i, claim in enumerate(claims or []):
        if not isinstance(claim, dict) or "claim" not in claim:
            raise ReportError(f"claim {i} must be a dict with a 'claim' key (and 'supported', 'evidence'), got {claim!r}")
        verdict = claim.get("supported")
        if verdict is True:
            verdict = "yes"
        elif verdict is False:
            verdict = "no"
        elif verdict is None:
            verdict = NOT_MEASURED
        verdict = str(verdict).strip().lower().replace("_", " ")
        if verdict not in CLAIM_VERDICTS:
            raise ReportError(f"claim {i}: 'supported' must be one of {', '.join(CLAIM_VERDICTS)} (or True/False/None), "
                              f"got {claim.get('supported')!r}")
        out.append({"claim": str(claim["claim"]), "verdict": verdict, "css": verdict.replace(" ", "-"),
                    "evidence": str(claim.get("evidence", "") or "")})
    return out
