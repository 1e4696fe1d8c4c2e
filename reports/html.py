"""The self-contained HTML report: figures, plain-language readings, tables and provenance.

One file with everything embedded (PNG figures as base64 data URIs, inline CSS, no
JavaScript, no network reference), so it opens as an e-mail attachment. The SVG
and PNG files of every figure are written beside it for papers. Built from run
folders alone (SPEC §6): no model is loaded.
"""

from __future__ import annotations

import base64
import math
import os
import re
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES
from reports.figures_agreement import agreement_matrix, plot_ranking_agreement
from reports.figures_deletion import plot_deletion_curves, plot_deletion_summary, random_band
from reports.figures_gallery import (
    FAILURE_KINDS,
    failure_examples,
    improvement_examples,
    plain_examples,
    plot_mask_gallery,
)
from reports.figures_localization import plot_localization
from reports.figures_occlusion import plot_occlusion
from reports.figures_sparsity import plot_keep_by_correctness, plot_keep_histogram, plot_per_class_keep
from reports.figures_style import RC, ranking_order, ranking_style, save_figure
from reports.paper_table import summary_table
from reports.tables import (
    HEADLINE_LOCALIZATION,
    MAP_NAMES,
    ReportError,
    Run,
    as_runs,
    localization_rows,
    series_labels,
    stack,
    unique_labels,
)

__all__ = ["CLAIM_VERDICTS", "build_report"]

CLAIM_VERDICTS = ("yes", "no", "partly", "not measured")
_TEMPLATE = "report.html.j2"


# ---------------------------------------------------------------- page parts


@dataclass
class FigureBlock:
    """A figure as the template shows it."""

    caption: str
    data_uri: str  # data:image/png;base64,...
    png: str  # file names in the figures folder
    svg: str
    alt: str
    width: int  # display width in CSS pixels (the PNG at 100 px per inch, like print size)


@dataclass
class TableBlock:
    """A small table of display strings."""

    caption: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    text_columns: int = 1  # leading columns holding text (left-aligned); the rest are numbers


@dataclass
class Reading:
    """Plain-language reading of one series: a heading and sentences."""

    heading: str
    sentences: list[str]


@dataclass
class Section:
    """One section of the report."""

    id: str
    title: str
    intro: str = ""
    readings: list[Reading] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)


# ---------------------------------------------------------------- formatting


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: float, digits: int, sign: bool = False) -> str:
    """A number with a true minus sign and no negative zero."""
    value = float(value)
    if round(value, digits) == 0:
        value = 0.0
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("-", "\u2212")


def _pct(value: Any, digits: int = 1) -> str:
    return _fmt(float(value) * 100, digits) + "%" if _finite(value) else "–"


def _num(value: Any, digits: int = 3) -> str:
    return _fmt(value, digits) if _finite(value) else "–"


def _signed_points(value: Any) -> str:
    return _fmt(float(value) * 100, 1, sign=True) if _finite(value) else "–"


def _range(low: Any, high: Any, scale: float = 1.0, digits: int = 3) -> str:
    """"0.10–0.20", or "−0.20 to −0.10" when a bound is negative (a dash would read as a minus)."""
    lo, hi = float(low) * scale, float(high) * scale
    joiner = " to " if min(lo, hi) < 0 else "–"
    return f"{_fmt(lo, digits)}{joiner}{_fmt(hi, digits)}"


def _ci(low: Any, high: Any, scale: float = 1.0, digits: int = 3) -> str:
    if not (_finite(low) and _finite(high)):
        return ""
    return "95% CI " + _range(low, high, scale, digits)


def _metric_value(metric: str, value: Any, low: Any = None, high: Any = None) -> str:
    """A metric with its interval: accuracies in %, other values with three decimals."""
    if metric.startswith("n_") and _finite(value) and float(value).is_integer() and not _finite(low):
        return str(int(value))  # a count, such as n_images
    if "accuracy" in metric or metric in ("pointing_game", "box_gt_known"):
        text, interval = _pct(value), _ci(low, high, 100, 1)
    else:
        text, interval = _num(value), _ci(low, high)
    return f"{text} ({interval})" if interval else text


def _k(value: Any) -> str:
    return str(int(round(float(value)))) if _finite(value) else "–"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


# ---------------------------------------------------------------- readings


def _deletion_readings(curves: pd.DataFrame, summary: pd.DataFrame, tests: pd.DataFrame) -> list[Reading]:
    out = []
    for series in pd.unique(pd.concat([curves["series"], summary["series"]])):
        sentences = []
        cur = curves[curves["series"] == series]
        summ = summary[summary["series"] == series].set_index("ranking") if not summary.empty else pd.DataFrame()
        rand = cur[cur["ranking"] == "random"]
        rand_mean = random_band(rand)[0] if not rand.empty else None
        rankings = ranking_order(list(cur["ranking"]) + list(summ.index))
        for ranking in [r for r in rankings if r != "random"]:
            label = ranking_style(ranking).label
            label = label[0].lower() + label[1:] if label[1:2].islower() else label
            parts = []
            rows = cur[cur["ranking"] == ranking].groupby("k")["accuracy"].mean()
            if rand_mean is not None and not rows.empty:
                common = [k for k in rows.index if k > 0 and k in rand_mean.index]
                if common:
                    above = int(sum(rows[k] > rand_mean[k] for k in common))
                    below = int(sum(rows[k] < rand_mean[k] for k in common))
                    if above >= below:
                        text = f"Deleting by {label} stays above random at {above} of {len(common)} steps"
                    else:
                        text = f"Deleting by {label} falls below random at {below} of {len(common)} steps"
                    sel = tests[(tests["series"] == series) & (tests["ranking"] == ranking) & (tests["k"] > 0)] if not tests.empty else tests
                    if not sel.empty:
                        first = sel[sel["test"] == sel["test"].iloc[0]]
                        has_ci = first["ci_low"].notna() & first["ci_high"].notna()
                        up = (has_ci & (first["ci_low"] > 0)) | (~has_ci & (first["p_value"] < 0.05) & (first["difference"] > 0))
                        down = (has_ci & (first["ci_high"] < 0)) | (~has_ci & (first["p_value"] < 0.05) & (first["difference"] < 0))
                        n_sig = int(first.loc[up if above >= below else down, "k"].nunique())
                        test = _words(str(first["test"].iloc[0]))
                        test = test if "paired" in test else f"paired {test}"
                        text += (f" ({'significantly' if n_sig else 'but never significantly'}"
                                 f"{f' at {n_sig}' if n_sig else ''}: {test} 95% interval "
                                 f"{'above' if above >= below else 'below'} zero)")
                    parts.append(text)
            if ranking in summ.index:
                row = summ.loc[ranking]
                row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                if _finite(row["max_gap_to_random"]):
                    interval = _ci(row["max_gap_ci_low"], row["max_gap_ci_high"], 100, 1)
                    if float(row["max_gap_to_random"]) > 0:
                        gap = (f"the largest gap is {_fmt(float(row['max_gap_to_random']) * 100, 1)} points "
                               f"at k={_k(row['max_gap_k'])}")
                        parts.append(gap + (f" ({interval})" if interval else ""))
                    else:
                        parts.append("it never beats random")
                if _finite(row["peak_k"]) and row["peak_k"] > 0 and _finite(row["acc_k0"]) and row["peak_accuracy"] > row["acc_k0"] + 1e-9:
                    parts.append(f"accuracy rises from {_pct(row['acc_k0'])} at k=0 to a peak of "
                                 f"{_pct(row['peak_accuracy'])} at k={_k(row['peak_k'])}")
                if ranking in ("energy", "unary") and _finite(row["half_accuracy_k"]):
                    parts.append(f"half of the k=0 accuracy is lost at k={_k(row['half_accuracy_k'])}")
                if _finite(row["auc"]):
                    parts.append(f"AUC {_num(row['auc'])}")
            if parts:
                sentences.append("; ".join(parts) + ".")
        if "random" in summ.index:
            row = summ.loc["random"]
            row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
            seeds = int(row["n_seeds"]) if _finite(row["n_seeds"]) else 1
            text = f"Random deletion (mean of {seeds} seed{'s' if seeds != 1 else ''}) has AUC {_num(row['auc'])}"
            if _finite(row["half_accuracy_k"]):
                text += f" and loses half of the k=0 accuracy at k={_k(row['half_accuracy_k'])}"
            sentences.append(text + ".")
        if sentences:
            out.append(Reading(str(series), sentences))
    return out


def _agreement_readings(agreement: pd.DataFrame) -> list[Reading]:
    out = []
    for series in pd.unique(agreement["series"]):
        matrix = agreement_matrix(agreement[agreement["series"] == series])
        sentences = []
        pivot = "energy" if "energy" in matrix.index else ("unary" if "unary" in matrix.index else None)
        if pivot:
            others = matrix.loc[pivot].drop([pivot, "random"], errors="ignore").dropna()
            if len(others) >= 2:
                hi, lo = others.idxmax(), others.idxmin()
                sentences.append(f"The {pivot} order agrees most with {_words(hi)} (mean Spearman ρ = {_num(others[hi], 2)}) "
                                 f"and least with {_words(lo)} (ρ = {_num(others[lo], 2)}).")
            elif len(others) == 1:
                sentences.append(f"The {pivot} order has mean Spearman ρ = {_num(others.iloc[0], 2)} with {_words(others.index[0])}.")
        if "random" in matrix.index:
            rnd = matrix.loc["random"].drop("random").dropna()
            if len(rnd):
                top = float(rnd.abs().max())
                sentences.append(f"Random orders correlate with every other ranking at |ρ| ≤ {_num(top, 2)}"
                                 + (", as unrelated orders should." if top < 0.2 else "; expected near 0, so check the random seeds."))
        if sentences:
            out.append(Reading(str(series), sentences))
    return out


def _occlusion_readings(occlusion: pd.DataFrame, summary: pd.DataFrame) -> list[Reading]:
    out = []
    for series in pd.unique(pd.concat([occlusion["series"], summary["series"]])):
        sentences = []
        summ = summary[summary["series"] == series]
        if not summ.empty:
            mean_rr = summ["mean_relative_robustness"].mean()
            worst = summ.loc[summ["min_relative_robustness"].idxmin()] if summ["min_relative_robustness"].notna().any() else None
            text = f"On average over {len(summ)} fill × pattern combinations it keeps {_pct(mean_rr, 0)} of its clean accuracy (mean relative robustness {_num(mean_rr, 2)})"
            if worst is not None:
                text += (f"; the hardest is {_words(worst['pattern'])} with {worst['fill']} fill, down to "
                         f"{_pct(worst['min_relative_robustness'], 0)} of clean accuracy")
            sentences.append(text + ".")
            diffs = summ[summ["diff_auc_to_first"].notna()]
            if not diffs.empty:
                d = diffs["diff_auc_to_first"].mean()
                excl = int(((diffs["diff_ci_low"].round(3) > 0) | (diffs["diff_ci_high"].round(3) < 0)).sum())
                sentences.append(f"Its occlusion AUC differs from the first checkpoint's by {_fmt(d, 3, sign=True)} on average; "
                                 f"the 95% interval excludes zero for {excl} of {len(diffs)} combinations.")
        occ = occlusion[occlusion["series"] == series]
        if not occ.empty:
            top = occ["severity"].max()
            at = occ[occ["severity"] == top]
            sentences.append(f"At the highest severity ({top:g}) accuracy ranges from {_pct(at['accuracy'].min())} "
                             f"to {_pct(at['accuracy'].max())} across patterns and fills.")
        out.append(Reading(str(series), sentences))
    return out


def _find_metric(stats: pd.DataFrame, words: tuple[str, ...], threshold: float | None = None) -> pd.Series | None:
    rows = stats[stats["metric"].map(lambda m: all(w in m for w in words))]
    if threshold is not None:
        close = rows[np.isclose(rows["threshold"].astype(float), threshold) | rows["metric"].str.contains(str(threshold))]
        rows = close if not close.empty else rows
    return rows.iloc[0] if not rows.empty else None


def _sparsity_readings(runs_tables: dict[str, pd.DataFrame]) -> list[Reading]:
    stats, per_image, per_class = (runs_tables[n] for n in ("sparsity_summary.csv", "per_image.csv", "per_class_keep.csv"))
    out = []
    names = pd.unique(pd.concat([t["series"] for t in (stats, per_image, per_class)]))
    for series in names:
        sentences = []
        st = stats[stats["series"] == series]
        keep_rows = st[(st["map"].isin(["keep", ""])) & (st["metric"] == "mean_keep")]
        img = per_image[per_image["series"] == series]
        if not keep_rows.empty:
            r = keep_rows.iloc[0]
            text = f"Mean keep probability π is {_metric_value('mean_keep', r['value'], r['ci_low'], r['ci_high'])}"
        elif not img.empty and img["mean_keep"].notna().any():
            text = f"Mean keep probability π is {_num(img['mean_keep'].mean())}"
        else:
            text = ""
        below = _find_metric(st, ("below",), 0.5) if not st.empty else None
        if text and below is not None:
            text += f"; {_pct(below['value'], 0)} of tokens have π below {below['threshold']:g}" if _finite(below["threshold"]) \
                else f"; the share of tokens below the threshold is {_pct(below['value'], 0)}"
        if text:
            sentences.append(text + ".")
        right_row = st[(st["metric"] == "mean_keep_correct")]
        wrong_row = st[(st["metric"] == "mean_keep_wrong")]
        gap_row = st[(st["metric"] == "keep_gap_correct_minus_wrong")]
        if len(right_row) and len(wrong_row):
            text = (f"Correctly classified images keep {_metric_value('keep', *right_row.iloc[0][['value', 'ci_low', 'ci_high']])} "
                    f"on average, misclassified ones {_metric_value('keep', *wrong_row.iloc[0][['value', 'ci_low', 'ci_high']])}")
            if len(gap_row) and _finite(gap_row.iloc[0]["ci_low"]):
                g = gap_row.iloc[0]
                excludes = round(float(g["ci_low"]), 3) > 0 or round(float(g["ci_high"]), 3) < 0
                text += (f"; the difference {_fmt(g['value'], 3, sign=True)} ({_ci(g['ci_low'], g['ci_high'])}) "
                         + ("excludes zero" if excludes else "includes zero"))
            sentences.append(text + ".")
        elif not img.empty and img["mean_keep"].notna().any():
            right, wrong = img[img["correct"]], img[~img["correct"]]
            if len(right) and len(wrong):
                sentences.append(f"Correctly classified images keep {_num(right['mean_keep'].mean())} on average (n={len(right)}), "
                                 f"misclassified ones {_num(wrong['mean_keep'].mean())} (n={len(wrong)}).")
        cls = per_class[(per_class["series"] == series)].dropna(subset=["mean_keep"])
        if len(cls) >= 2 and _num(cls["mean_keep"].min()) != _num(cls["mean_keep"].max()):
            lo, hi = cls.loc[cls["mean_keep"].idxmin()], cls.loc[cls["mean_keep"].idxmax()]
            sentences.append(f"Per class, the keep rate ranges from {_num(lo['mean_keep'])} ({_words(str(lo['class_name']))}) "
                             f"to {_num(hi['mean_keep'])} ({_words(str(hi['class_name']))}).")
        acc = st[st["metric"] == "accuracy"]
        if not acc.empty:
            r = acc.iloc[0]
            sentences.insert(0, f"Top-1 accuracy is {_metric_value('accuracy', r['value'], r['ci_low'], r['ci_high'])}.")
        if sentences:
            out.append(Reading(str(series), sentences))
    return out


def _localization_readings(rows: pd.DataFrame) -> list[Reading]:
    out = []
    for series in pd.unique(rows["series"]):
        sentences = []
        part = rows[rows["series"] == series]
        for map_name in [m for m in MAP_NAMES if m in set(part["map"])]:
            sub = part[part["map"] == map_name]
            bits = []
            for metric, threshold in HEADLINE_LOCALIZATION:
                hit = sub[sub["metric"] == metric]
                if threshold is not None:
                    hit = hit[np.isclose(hit["threshold"].astype(float), threshold)]
                if len(hit):
                    r = hit.iloc[0]
                    name = _words(metric) + (f" @ {threshold:g}" if threshold is not None else "")
                    bits.append(f"{name} {_metric_value(metric, r['value'], r['ci_low'], r['ci_high'])}")
            if bits:
                sentences.append(f"With the {map_name} map: " + ", ".join(bits) + ".")
        if sentences:
            out.append(Reading(str(series), sentences))
    return out


# ---------------------------------------------------------------- tables


def _summary_blocks(summary: pd.DataFrame) -> list[TableBlock]:
    """The headline table (accuracy, keep, deletion, occlusion) and, where measured, localization."""
    aucs = [c for c in summary.columns if c.startswith("auc_") and summary[c].notna().any()]
    show_keep = summary["mean_keep"].notna().any()
    show_gap = summary["max_gap_to_random"].notna().any()
    show_occ = summary["occlusion_robustness"].notna().any()
    columns = ["Model", "Accuracy"] + (["Mean keep π"] if show_keep else []) + [f"AUC {_words(c[4:])}" for c in aucs]
    columns += ["Largest gap to random (points)", "95% CI"] if show_gap else []
    columns += ["Occlusion robustness"] if show_occ else []
    rows, marks = [], {}
    for r in summary.to_dict("records"):
        mark = ""
        if r["accuracy_source"] and r["accuracy_source"] != "sparsity":
            mark = marks.setdefault(r["accuracy_source"], "†" * (len(marks) + 1))
        row = [r["model"], _pct(r["accuracy"]) + mark] + ([_num(r["mean_keep"])] if show_keep else [])
        row += [_num(r[c]) for c in aucs]
        if show_gap:
            if _finite(r["max_gap_to_random"]):
                row.append(f"{_signed_points(r['max_gap_to_random'])} ({_words(r['gap_ranking'])}, k={_k(r['max_gap_k'])})")
                row.append(_range(r["max_gap_ci_low"], r["max_gap_ci_high"], 100, 1) if _finite(r["max_gap_ci_low"]) else "–")
            else:
                row += ["–", "–"]
        row += [_num(r["occlusion_robustness"])] if show_occ else []
        rows.append(row)
    note = "Accuracy: top-1 of the model as trained (sparsity run)" + "".join(f"; {m} {s}" for s, m in marks.items())
    note += ". AUC: normalized area under the deletion curve (higher = accuracy survives deletion longer)."
    if show_gap:
        note += " Largest gap: the ranking's accuracy minus random's, at its best k."
    if show_occ:
        note += " Occlusion robustness: mean of acc(s)/acc(0) over fills, patterns and severities."
    blocks = [TableBlock("Summary per model", columns, rows, note)]
    locs = [(c, metric, t, c[len(metric) + 1:]) for metric, t in HEADLINE_LOCALIZATION for c in summary.columns
            if c.startswith(f"{metric}_") and c[len(metric) + 1:] in MAP_NAMES and summary[c].notna().any()]
    if locs:
        loc_rows = [[r["model"]] + [_pct(r[c]) if "accuracy" in m or m == "pointing_game" else _num(r[c]) for c, m, _, _ in locs]
                    for r in summary.to_dict("records") if any(_finite(r[c]) for c, *_ in locs)]
        headers = [f"{_words(m)}{f' @ {t:g}' if t is not None else ''} ({map_name})" for _, m, t, map_name in locs]
        blocks.append(TableBlock("Localization per model (map in brackets)", ["Model", *headers], loc_rows,
                                 "Box accuracy: correct class and box IoU > 0.5, box around the largest region above 15% of "
                                 "the map's max. IoU @ 0.5: mask IoU of the map thresholded at half its max. Mass in object: "
                                 "share of the map inside the object. All metrics are in sparsity_summary.csv."))
    return blocks


def _deletion_table(summary: pd.DataFrame) -> TableBlock:
    rows = []
    for r in summary.to_dict("records"):
        gap = "–"
        if _finite(r["max_gap_to_random"]):
            interval = _ci(r["max_gap_ci_low"], r["max_gap_ci_high"], 100, 1)
            gap = f"{_signed_points(r['max_gap_to_random'])} at k={_k(r['max_gap_k'])}" + (f" ({interval})" if interval else "")
        rows.append([r["series"], _words(r["ranking"]), _num(r["auc"]), _pct(r["acc_k0"]),
                     f"{_pct(r['peak_accuracy'])} at k={_k(r['peak_k'])}", gap, _k(r["half_accuracy_k"])])
    return TableBlock("Deletion summary per ranking (deletion_summary.csv)",
                      ["Model", "Ranking", "AUC", "Acc. k=0", "Peak", "Largest gap to random (points)", "Half-accuracy k"], rows,
                      text_columns=2)


def _occlusion_table(summary: pd.DataFrame) -> TableBlock:
    rows = []
    for r in summary.to_dict("records"):
        diff = "–"
        if _finite(r["diff_auc_to_first"]):
            interval = _ci(r["diff_ci_low"], r["diff_ci_high"])
            diff = _fmt(r["diff_auc_to_first"], 3, sign=True) + (f" ({interval})" if interval else "")
        rows.append([r["series"], r["fill"], _words(r["pattern"]), _num(r["auc"]), _pct(r["acc0"]),
                     _num(r["mean_relative_robustness"]), _num(r["min_relative_robustness"]), diff])
    return TableBlock("Occlusion summary (occlusion_summary.csv)",
                      ["Model", "Fill", "Pattern", "AUC", "Clean acc.", "Mean rel. robustness", "Min rel. robustness",
                       "AUC − first checkpoint"], rows, text_columns=3)


def _sparsity_table(stats: pd.DataFrame) -> TableBlock:
    series = list(pd.unique(stats["series"]))
    keys = list(dict.fromkeys(zip(stats["metric"], stats["map"], stats["threshold"].map(lambda t: "" if not _finite(t) else f"{t:g}"))))
    rows = []
    for metric, map_name, threshold in keys:
        row = [_words(metric), map_name or "–", threshold or "–"]
        for name in series:
            hit = stats[(stats["series"] == name) & (stats["metric"] == metric) & (stats["map"] == map_name)]
            if threshold:
                hit = hit[hit["threshold"].map(lambda t: _finite(t) and f"{t:g}" == threshold)]
            row.append(_metric_value(metric, *hit.iloc[0][["value", "ci_low", "ci_high"]]) if len(hit) else "–")
        rows.append(row)
    return TableBlock("Sparsity and mask statistics (sparsity_summary.csv)", ["Metric", "Map", "Threshold", *series], rows,
                      text_columns=3)


# ---------------------------------------------------------------- provenance


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


def _provenance(run: Run, out_dir: Path) -> dict[str, Any]:
    files = []
    for name in [*TABLES, SUMMARY_JSON, MAPS_NPZ]:
        path = run.path / name
        if path.is_file() and name.endswith(".csv"):
            rel = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
            files.append({"name": name, "href": urllib.parse.quote(rel, safe="/.-_~")})
    present = [n for n in (SUMMARY_JSON, MAPS_NPZ) if (run.path / n).is_file()]
    # relative to the report: stays right when the folder is renamed (the commands write into a
    # temporary folder renamed when complete) or copied together with the report
    rel = Path(os.path.relpath(run.path.resolve(), out_dir.resolve())).as_posix()
    here = rel == "."
    return {"label": run.label if here else f"{run.label}: {rel}",
            "folder": "the folder of this report" if here else f"{rel} (relative to this report)",
            "items": _flatten(run.summary), "files": files,
            "other_files": present, "notes": run.notes}


# ---------------------------------------------------------------- claims


def _claims(claims: list[dict] | None) -> list[dict[str, str]]:
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
            verdict = "not measured"
        verdict = str(verdict).strip().lower().replace("_", " ")
        if verdict not in CLAIM_VERDICTS:
            raise ReportError(f"claim {i}: 'supported' must be one of {', '.join(CLAIM_VERDICTS)} (or True/False/None), got {claim.get('supported')!r}")
        out.append({"claim": str(claim["claim"]), "verdict": verdict, "css": verdict.replace(" ", "-"),
                    "evidence": str(claim.get("evidence", "") or "")})
    return out


# ---------------------------------------------------------------- build


class _Figures:
    """Saves figures (PNG + SVG) into one folder and embeds the PNG."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: set[str] = set()

    def add(self, make: Callable[[], Figure], name: str, caption: str, tight: bool = True) -> FigureBlock:
        base, n = name, 2
        while name in self.names:
            name, n = f"{base}-{n}", n + 1
        self.names.add(name)
        fig = make()
        png, svg = save_figure(fig, self.folder, name, tight=tight)
        raw = png.read_bytes()
        width = int(int.from_bytes(raw[16:20], "big") * 100 / float(RC["savefig.dpi"]))  # PNG IHDR width
        data = base64.b64encode(raw).decode("ascii")
        return FigureBlock(caption, f"data:image/png;base64,{data}", png.name, svg.name, caption, width)


def _has(table: pd.DataFrame) -> bool:
    return table is not None and not table.empty


def _gallery_section(runs: list[Run], figures: _Figures) -> Section | None:
    baseline = next((r for r in runs if r.is_baseline and r.table("per_image.csv") is not None), None)
    subsections = []
    for number, run in enumerate(runs):
        if run.maps is None:
            continue
        slug = _slug(run.label)
        sub = Section(id=f"gallery-{number + 1}-{slug}", title=run.label)
        n_maps = len(run.maps["index"])
        plain = plain_examples(run)
        sentences = [f"maps.npz holds {n_maps} images chosen by the sparsity run; the mask gallery shows the first {len(plain)}."]
        if plain:
            sub.figures.append(figures.add(lambda: plot_mask_gallery(run.maps, plain, title=f"{run.label}: mask gallery"),
                                           f"gallery_{slug}", f"{run.label}: image, map and faded view", tight=False))
        if baseline is not None and baseline is not run and not run.is_baseline:
            better = improvement_examples(run, baseline)
            sentences.append(f"{len(better)} of these images are wrong for {baseline.label} and right for {run.label}"
                             + (" (showing up to 6)." if better else "."))
            if better:
                sub.figures.append(figures.add(
                    lambda: plot_mask_gallery(run.maps, better, title=f"Improvements: {baseline.label} wrong, {run.label} right"),
                    f"improvements_{slug}", f"{run.label}: improvements over {baseline.label}", tight=False))
        per_image = run.table("per_image.csv")
        for kind, meaning in FAILURE_KINDS.items():
            chosen = failure_examples(run, kind)
            available = len(failure_examples(run, kind, limit=n_maps))
            total = int((per_image["failure"] == kind).sum()) if per_image is not None else 0
            if total:
                sentences.append(f"{total} images are '{_words(kind)}' failures ({meaning}); {available} of them are in maps.npz"
                                 + (f", {len(chosen)} shown." if chosen else "."))
            if chosen:
                sub.figures.append(figures.add(
                    lambda: plot_mask_gallery(run.maps, chosen, title=f"{run.label}: failures, {_words(kind)} ({meaning})"),
                    f"failures_{kind}_{slug}", f"{run.label}: {_words(kind)} failures", tight=False))
        sub.readings.append(Reading("What is shown", sentences))
        if sub.figures:
            subsections.append(sub)
    if not subsections:
        return None
    return Section(id="galleries", title="Galleries", subsections=subsections,
                   intro="Each example shows the transformed input, the map the model gates with (keep probability π; "
                         "CAM for models without a gate) and the image multiplied by the bilinearly upsampled map. "
                         "The dashed outline is the object mask where the dataset has one.")


def build_report(
    runs: list[Run | str | Path],
    out_html: str | Path,
    figures_dir: str | Path | None = None,
    claims: list[dict] | None = None,
    title: str | None = None,
) -> Path:
    """Write every figure (PNG + SVG) and one self-contained HTML report.

    Args:
        runs: loaded run folders (:func:`reports.load_run`) or their paths; several give a comparative
            report. Runs sharing a label (one model's deletion, occlusion and sparsity folders) are
            shown as one model.
        out_html: the HTML file, written atomically (temporary name, then rename).
        figures_dir: where PNG and SVG files go; default ``<out_html parent>/figures``.
        claims: optional list of ``{"claim": str, "supported": "yes"|"no"|"partly"|"not measured"
            (or True/False/None), "evidence": str}`` rendered as a claims section.
        title: page title; default names the runs.

    Returns:
        The HTML path.

    Raises:
        ReportError: no runs, or a malformed claim.
    """
    if not runs:
        raise ReportError("no runs to report on; pass at least one run folder")
    runs = as_runs(runs)
    out_html = Path(out_html)
    out_dir = out_html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(Path(figures_dir) if figures_dir is not None else out_dir / "figures")
    runs = unique_labels(runs)
    labels = series_labels(runs)
    tables = {name: stack(runs, name, labels) for name in TABLES}
    claim_rows = _claims(claims)
    sections: list[Section] = []

    # deletion
    curves, dsum, tests, agree = (tables[n] for n in ("deletion_curves.csv", "deletion_summary.csv", "deletion_tests.csv", "ranking_agreement.csv"))
    if _has(curves) or _has(dsum) or _has(agree):
        sec = Section(id="deletion", title="Deletion",
                      intro="Tokens of the final feature map are deleted in the order each ranking gives (first = deleted first) "
                            "and top-1 accuracy is measured after each step (SPEC §2; the paper's Fig. 3/4).")
        if _has(curves):
            sec.figures.append(figures.add(lambda: plot_deletion_curves(curves), "deletion_curves",
                                           "Accuracy against patches removed, per ranking (bands: 95% CI; random: mean and min–max over seeds)."))
        if _has(curves) or _has(dsum):
            sec.readings += _deletion_readings(curves, dsum, tests)
        if _has(dsum):
            sec.figures.append(figures.add(lambda: plot_deletion_summary(dsum), "deletion_summary",
                                           "Area under the deletion curve per ranking, and the largest gap to random with its 95% CI."))
            sec.tables.append(_deletion_table(dsum))
        if _has(agree):
            sec.figures.append(figures.add(lambda: plot_ranking_agreement(agree), "ranking_agreement",
                                           "Mean per-image Spearman correlation between the deletion orders of two rankings."))
            sec.readings += [Reading(f"{r.heading}: ranking agreement", r.sentences) for r in _agreement_readings(agree)]
        sections.append(sec)

    # occlusion
    occ, osum = tables["occlusion.csv"], tables["occlusion_summary.csv"]
    if _has(occ) or _has(osum):
        sec = Section(id="occlusion", title="Occlusion",
                      intro="Input regions are covered by an occluder (fill) in a pattern at growing severity (SPEC §3). "
                            "Relative robustness is accuracy under occlusion divided by clean accuracy.")
        if _has(occ):
            sec.figures.append(figures.add(lambda: plot_occlusion(occ), "occlusion",
                                           "Accuracy against occlusion severity; one panel per pattern, one colour per checkpoint, one line style per fill."))
        sec.readings += _occlusion_readings(occ, osum)
        if _has(osum):
            sec.tables.append(_occlusion_table(osum))
        sections.append(sec)

    # sparsity and localization
    stats, hist, per_class, per_image = (tables[n] for n in ("sparsity_summary.csv", "keep_histogram.csv", "per_class_keep.csv", "per_image.csv"))
    if any(_has(t) for t in (stats, hist, per_class, per_image)):
        sec = Section(id="sparsity", title="Sparsity and localization",
                      intro="How much of the feature map the gate keeps, for which images and classes, and whether what it keeps "
                            "lies on the object (SPEC §4).")
        sec.readings += _sparsity_readings({"sparsity_summary.csv": stats, "per_image.csv": per_image, "per_class_keep.csv": per_class})
        if _has(hist):
            sec.figures.append(figures.add(lambda: plot_keep_histogram(hist), "keep_histogram", "Distribution of per-image keep rates (keep_histogram.csv)."))
        if _has(per_class) and per_class["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_per_class_keep(per_class), "per_class_keep",
                                           "Mean keep probability per class, and class accuracy against it."))
        if _has(per_image) and per_image["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_keep_by_correctness(per_image), "keep_by_correctness",
                                           "Per-image mean keep probability of correctly and wrongly classified images."))
        loc = localization_rows(stats) if _has(stats) else pd.DataFrame()
        if not loc.empty:
            sec.figures.append(figures.add(lambda: plot_localization(stats), "localization",
                                           "Localization against the object mask or box, per map (95% CI)."))
            sec.readings += [Reading(f"{r.heading}: localization", r.sentences) for r in _localization_readings(loc)]
        if _has(stats):
            sec.tables.append(_sparsity_table(stats))
        sections.append(sec)

    gallery = _gallery_section(runs, figures)
    if gallery is not None:
        sections.append(gallery)

    summary = _summary_blocks(summary_table(runs, labels))
    models = list(dict.fromkeys(labels.values()))
    try:
        version = metadata.version("ersm-eval")
    except metadata.PackageNotFoundError:
        version = "unknown"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    html = env.get_template(_TEMPLATE).render(
        title=title or "ERSM evaluation report: " + ", ".join(models),
        models=models,
        n_folders=len(runs),
        summary=summary,
        claims=claim_rows,
        sections=sections,
        provenance=[_provenance(r, out_dir) for r in runs],
        figures_dir=os.path.relpath(figures.folder.resolve(), out_dir.resolve()),
        version=version,
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{out_html.name}.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, out_html)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_html
