"""The per-model results table: accuracy, mean keep, deletion AUC per ranking, occlusion robustness.

:func:`summary_table` gathers every headline number of each (run, checkpoint);
:func:`paper_table` keeps the columns a paper's results table shows, and
:func:`write_paper_table` writes it as Markdown and LaTeX.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ersm_eval import verdicts
from reports.figures_style import ranking_order
from reports.tables import (
    HEADLINE_LOCALIZATION,
    MAP_NAMES,
    Group,
    Run,
    as_runs,
    model_groups,
    recorded_chance_test,
    rows_for,
    series_labels,
    unique_labels,
)

__all__ = ["GAP_RANKINGS", "paper_table", "summary_table", "write_paper_table"]

# the ranking whose ΔAUC to random is the headline number: the first one present
GAP_RANKINGS = ("energy", "unary", "cam", "magnitude")
_rows_for = rows_for


def _accuracy(group: Group) -> tuple[float, str]:
    stats = _rows_for(group, "sparsity_summary.csv")
    if stats is not None:
        hit = stats.loc[stats["metric"] == "accuracy", "value"].dropna()
        if len(hit):
            return float(hit.iloc[0]), "sparsity"
    images = _rows_for(group, "per_image.csv")
    if images is not None:
        return float(images["correct"].mean()), "sparsity (per image)"
    deletion = _rows_for(group, "deletion_summary.csv")
    if deletion is not None and deletion["acc_k0"].notna().any():
        return float(deletion["acc_k0"].median()), "deletion k=0"
    occlusion = _rows_for(group, "occlusion_summary.csv")
    if occlusion is not None and occlusion["acc0"].notna().any():
        return float(occlusion["acc0"].median()), "occlusion severity 0"
    return math.nan, ""


def _mean_keep(group: Group) -> float:
    stats = _rows_for(group, "sparsity_summary.csv")
    if stats is not None:
        hit = stats[stats["metric"] == "mean_keep"].sort_values("map", key=lambda m: m != "keep")["value"].dropna()
        if len(hit):
            return float(hit.iloc[0])
    images = _rows_for(group, "per_image.csv")
    if images is not None and images["mean_keep"].notna().any():
        return float(images["mean_keep"].mean())
    classes = _rows_for(group, "per_class_keep.csv")
    if classes is not None and classes["mean_keep"].notna().any():
        rows = classes.dropna(subset=["mean_keep"])
        return float(np.average(rows["mean_keep"], weights=rows["n"].clip(lower=0) + 1e-12))
    return math.nan


def _localization_key(column: str) -> tuple[int, int]:
    """Columns in HEADLINE_LOCALIZATION order, then maps keep/energy/cam."""
    for i, (metric, _) in enumerate(HEADLINE_LOCALIZATION):
        for j, map_name in enumerate(MAP_NAMES):
            if column == f"{metric}_{map_name}":
                return i, j
    return len(HEADLINE_LOCALIZATION), 0


def summary_table(runs: list[Run], labels: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Every headline number, one row per (run label, checkpoint).

    Runs sharing a label (one model's deletion, occlusion and sparsity folders) give one row.

    Columns: ``run``, ``model`` (display label), ``checkpoint``, ``accuracy`` (fraction) and
    ``accuracy_source``, the chance test (``chance``, ``at_chance``: True, False or None when it
    cannot be told), ``mean_keep``, ``auc_<ranking>`` per ranking (the area of its LeRF order,
    least important first; random's one order), the headline of the first of
    :data:`GAP_RANKINGS` present (``gap_ranking``, ``sg`` (the symmetric gain, AUC(LeRF) −
    AUC(MoRF)), ``sg_ci_low``, ``sg_ci_high``, ``verdict``) with its LeRF order's secondary gaps to random (``min_gap_to_random``,
    ``min_gap_k``, ``min_gap_ci_low``, ``min_gap_ci_high`` and the same for ``max_gap``),
    ``occlusion_robustness`` (mean
    relative robustness over fills and patterns) and ``<metric>_<map>`` for the localization
    metrics of :data:`reports.tables.HEADLINE_LOCALIZATION` (IoU at 0.5 of the map's max).
    Missing numbers are NaN.
    """
    if labels is None:
        runs = unique_labels(as_runs(runs))
        labels = series_labels(runs)
    all_rankings = ranking_order(
        r for run in runs if run.table("deletion_summary.csv") is not None for r in run.table("deletion_summary.csv")["ranking"]
    )
    loc_columns: list[str] = []
    records = []
    groups = model_groups(runs, labels)
    gap_columns = [f"{w}_gap_{c}" for w in ("min", "max") for c in ("to_random", "k", "ci_low", "ci_high")]
    for model, group in groups.items():
        # one model, possibly evaluated in several folders (and as one checkpoint of an occlusion run)
        accuracy, source = _accuracy(group)
        test = recorded_chance_test(group)
        record: dict[str, object] = {
            "run": group[0][0].label, "model": model, "checkpoint": group[0][1],
            "accuracy": accuracy, "accuracy_source": source,
            "chance": test.chance if test is not None else math.nan,
            "at_chance": test.at_chance if test is not None else None,
            "mean_keep": _mean_keep(group),
        }
        deletion = _rows_for(group, "deletion_summary.csv")
        for ranking in all_rankings:
            hit = deletion.loc[deletion["ranking"] == ranking, "auc_lerf"] if deletion is not None else pd.Series(dtype=float)
            record[f"auc_{ranking}"] = float(hit.iloc[0]) if len(hit) else math.nan
        record.update(gap_ranking="", sg=math.nan, sg_ci_low=math.nan, sg_ci_high=math.nan, verdict="",
                      **{c: math.nan for c in gap_columns})
        if deletion is not None:
            for ranking in GAP_RANKINGS:
                hit = deletion[deletion["ranking"] == ranking]
                if len(hit):
                    row = hit.iloc[0]
                    record.update(gap_ranking=ranking, verdict=row["verdict"],
                                  **{c: float(row[c]) for c in ("sg", "sg_ci_low", "sg_ci_high", *gap_columns)})
                    break
        occlusion = _rows_for(group, "occlusion_summary.csv")
        record["occlusion_robustness"] = float(occlusion["mean_relative_robustness"].mean()) if occlusion is not None else math.nan
        stats = _rows_for(group, "sparsity_summary.csv")
        if stats is not None:
            for metric, threshold in HEADLINE_LOCALIZATION:
                for map_name in MAP_NAMES:
                    hit = stats[(stats["map"] == map_name) & (stats["metric"] == metric)]
                    if threshold is not None:
                        hit = hit[np.isclose(hit["threshold"].astype(float), threshold)]
                    if len(hit):
                        column = f"{metric}_{map_name}"
                        record[column] = float(hit["value"].iloc[0])
                        if column not in loc_columns:
                            loc_columns.append(column)
        records.append(record)
    loc_columns.sort(key=_localization_key)
    table = pd.DataFrame.from_records(records)
    # True, False or None as plain Python values (pandas would make an all-bool column numpy's)
    table["at_chance"] = pd.Series([None if v is None or v is np.nan else bool(v) for v in table["at_chance"]],
                                   index=table.index, dtype=object)
    for column in loc_columns:
        if column not in table:
            table[column] = math.nan
    base = [c for c in table.columns if c not in loc_columns]
    return table[base + loc_columns].reset_index(drop=True)


def paper_table(runs: list[Run | str | Path]) -> pd.DataFrame:
    """One row per run/checkpoint: accuracy, mean keep, deletion AUC per ranking, occlusion robustness.

    ``accuracy`` is a fraction; ``accuracy_source`` says which evaluation it comes from
    (the sparsity run's model accuracy when present, else the deletion protocol's k = 0);
    ``at_chance`` is the chance test of :mod:`ersm_eval.verdicts`; ``sg`` (the symmetric gain,
    with its interval) and ``verdict`` are the deletion headline of ranking ``gap_ranking``.
    """
    table = summary_table(as_runs(runs))
    keep = ["model", "checkpoint", "accuracy", "accuracy_source", "at_chance", "mean_keep"]
    keep += [c for c in table.columns if c.startswith("auc_") and not c.startswith("auc_diff")]
    keep += ["gap_ranking", "sg", "sg_ci_low", "sg_ci_high", "verdict", "occlusion_robustness"]
    return table[keep]


_HEADERS = {"model": "Model", "accuracy": "Accuracy (%)", "mean_keep": "Mean keep", "occlusion_robustness": "Occlusion robustness"}


def _formatted(df: pd.DataFrame) -> pd.DataFrame:
    """Display strings (:func:`ersm_eval.verdicts.format_number`): accuracy in %, other numbers with
    three decimals, the symmetric gain with its interval, the verdict in words."""
    fmt = verdicts.format_number
    out = pd.DataFrame(index=df.index)
    for column in df.columns:
        if column in ("checkpoint", "accuracy_source", "run", "gap_ranking", "sg_ci_low", "sg_ci_high"):
            continue
        values = df[column]
        if column == "accuracy":
            out[_HEADERS[column]] = [fmt(v, "percent").rstrip("%") for v in values]
        elif column == "at_chance":
            out[verdicts.AT_CHANCE.capitalize()] = ["yes" if v is True else "no" if v is False else verdicts.NOT_MEASURED for v in values]
        elif column == "sg":
            ranking = next((r for r in df.get("gap_ranking", []) if r), "")
            header = f"SG {ranking.replace('_', ' ')} (LeRF − MoRF)".replace("  ", " ")
            out[header] = [verdicts.format_estimate(v, lo, hi, "signed")
                           for v, lo, hi in zip(values, df["sg_ci_low"], df["sg_ci_high"])]
        elif column == "verdict":
            out["Verdict"] = [verdicts.verdict_words(v) for v in values]
        elif pd.api.types.is_numeric_dtype(values):
            header = _HEADERS.get(column, f"AUC {column[4:].replace('_', ' ')}" if column.startswith("auc_") else column)
            out[header] = [fmt(v) for v in values]
        else:
            out[_HEADERS.get(column, column)] = values.astype(str)
    return out


def _note(df: pd.DataFrame) -> str:
    if "accuracy_source" not in df:
        return ""
    sources = sorted({s for s in df["accuracy_source"] if s})
    text = ("Accuracy: top-1 on the evaluated split (sparsity run)." if sources == ["sparsity"] or not sources else
            "Accuracy from " + "; ".join(f"{m}: {s}" for m, s in zip(df["model"], df["accuracy_source"]) if s) + ".")
    text += (" AUC: normalized area under the deletion curve, deleting what the ranking calls least important"
             " first (LeRF).")
    if "sg" in df:
        text += (" SG: symmetric gain, the area deleting least important first (LeRF) minus the area deleting most"
                 " important first (MoRF), mean over images, paired bootstrap 95% interval;"
                 " verdict as the evaluation wrote it (ersm_eval.verdicts).")
    return text


def _latex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(ch, ch) for ch in text)


def write_paper_table(df: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``paper_table.md`` and ``paper_table.tex`` (booktabs) into ``out_dir``.

    Args:
        df: the frame from :func:`paper_table`.
        out_dir: folder, created if needed.

    Returns:
        The Markdown and LaTeX paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = _note(df)
    shown = _formatted(df)
    numeric = [c != "Model" for c in shown.columns]
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cell(c) for c in shown.columns) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    markdown = "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
    md_path = out_dir / "paper_table.md"
    md_path.write_text(markdown, encoding="utf-8")
    latex_frame = shown
    latex = latex_frame.to_latex(
        index=False, escape=True, column_format="".join("r" if n else "l" for n in numeric),
        caption=_latex_escape(note) or None, label="tab:ersm-results",
    )
    tex_path = out_dir / "paper_table.tex"
    tex_path.write_text(latex, encoding="utf-8")
    return md_path, tex_path
