"""The self-contained HTML report: verdicts first, then figures, tables and provenance.

One file with everything embedded (PNG figures as base64 data URIs, inline CSS, no
JavaScript, no network reference), so it opens as an e-mail attachment. The SVG
and PNG files of every figure are written beside it for papers. Built from run
folders alone: no model is loaded.

Every verdict and every sentence about what a result means comes from
:mod:`ersm_eval.verdicts`; this module only lays those sentences and the numbers
out. The page opens with the chance test of each model (a model at chance is said
to be so before any curve), then the ΔAUC of each ranking against random with its
interval and verdict.
"""

from __future__ import annotations

import base64
import math
import os
import re
import urllib.parse
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ersm_core.errors import ERSMError
from ersm_core.files import atomic_write_text
from ersm_eval import verdicts
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON
from reports.figures_agreement import agreement_matrix, plot_ranking_agreement
from reports.figures_deletion import plot_deletion_curves, plot_deletion_summary
from reports.figures_gallery import (
    FAILURE_KINDS,
    failure_examples,
    improvement_examples,
    plain_examples,
    plot_mask_gallery,
)
from reports.figures_localization import BASELINE_MAPS, plot_localization, plot_localization_baselines
from reports.figures_occlusion import plot_occlusion
from reports.figures_sparsity import plot_keep_by_correctness, plot_keep_histogram, plot_per_class_keep
from reports.figures_style import RC, ranking_order, save_figure
from reports.paper_table import NOT_MEASURED, row_verdict, summary_table
from reports.tables import (
    HEADLINE_LOCALIZATION,
    KNOWN_TABLES,
    MAP_NAMES,
    Group,
    ReportError,
    Run,
    as_runs,
    chance_test_of,
    model_accuracy_of,
    clean_path,
    localization_rows,
    model_groups,
    rows_for,
    series_labels,
    stack,
    typed_summary,
    unique_labels,
)
from reports.tables import _read_summary

__all__ = ["CLAIM_VERDICTS", "GENERATOR", "build_report", "is_own_report"]

CLAIM_VERDICTS = ("yes", "no", "partly", "not measured")
_TEMPLATE = "report.html.j2"
GENERATOR = '<meta name="generator" content="ersm-eval'  # how a report written by this module starts its head
_FIGURES_MARK = ".ersm-report-figures"  # marker in a figures folder this module created


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
    warnings: list[str] = field(default_factory=list)  # shown before the figures, in warning style


@dataclass
class ModelVerdicts:
    """What the page says first about one model: chance test, warnings, ΔAUC verdicts."""

    label: str
    chance: str  # verdicts.chance_sentence, or a "not measured" note
    at_chance: bool
    warnings: list[str] = field(default_factory=list)  # verdicts' position / uninformative-boxes sentences
    table: TableBlock | None = None  # ΔAUC per ranking with interval and verdict
    sentences: list[str] = field(default_factory=list)  # verdicts.deletion_sentence per ranking
    localization: list[str] = field(default_factory=list)  # verdicts.localization_sentence per real map
    notes: list[str] = field(default_factory=list)  # what was not measured
    boxes: str = ""  # verdicts' uninformative-boxes sentence, when the objects fill most images
    accuracy: str = ""  # verdicts.accuracy_sentence: the model's own test accuracy (as trained)
    accuracy_at_chance: bool = False


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


def _random_readings(summary: pd.DataFrame) -> list[Reading]:
    """The reference: random deletion's AUC per model (numbers only; the verdicts are elsewhere)."""
    out = []
    for series in pd.unique(summary["series"]):
        rows = summary[(summary["series"] == series) & (summary["ranking"] == "random")]
        if rows.empty:
            continue
        row = rows.iloc[0]
        seeds = int(row["n_seeds"]) if _finite(row["n_seeds"]) else 1
        text = f"Random deletion (mean of {seeds} seed{'s' if seeds != 1 else ''}) has AUC {_num(row['auc'])}"
        if _finite(row["half_accuracy_k"]):
            text += f" and loses half of the k=0 accuracy at k={_k(row['half_accuracy_k'])}"
        out.append(Reading(str(series), [text + "."]))
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
                sentences.append(f"Random orders correlate with every other ranking at |ρ| ≤ {_num(top, 2)} "
                                 "(unrelated orders give values near 0).")
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
                above, below, total = verdicts.step_counts(diffs["diff_ci_low"], diffs["diff_ci_high"])
                sentences.append(f"Its occlusion AUC differs from the first checkpoint's by {_fmt(d, 3, sign=True)} on average; "
                                 f"the 95% interval lies above zero for {above} and below zero for {below} of {total} combinations.")
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
                above, below, _ = verdicts.step_counts([g["ci_low"]], [g["ci_high"]])
                text += (f"; the difference {_fmt(g['value'], 3, sign=True)} ({_ci(g['ci_low'], g['ci_high'])}) "
                         + ("excludes zero" if above or below else "includes zero"))
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
            sentences.append("Baselines not measured: this folder was written before the uniform and centre maps were "
                             "measured, so these values have no reference (a map equal everywhere already scores the "
                             "object's area fraction on mass in object); re-run `ersm-eval sparsity`.")
            out.append(Reading(str(series), sentences))
    return out


# ---------------------------------------------------------------- verdicts


def _gap(value: Any, k: Any, low: Any, high: Any) -> str:
    if not _finite(value):
        return "–"
    interval = _range(low, high, 100, 1) if _finite(low) and _finite(high) else "no interval"
    return f"{_signed_points(value)} at k={_k(k)} ({interval})"


def _diff(value: Any, low: Any, high: Any, p_value: Any = None) -> str:
    if not _finite(value):
        return NOT_MEASURED
    text = _fmt(value, 3, sign=True)
    if _finite(low) and _finite(high):
        text += f" ({_range(low, high)})"
    if _finite(p_value):
        text += f", p = {float(p_value):.3f}" if float(p_value) >= 0.001 else ", p < 0.001"
    return text


def _verdict_rows(dsum: pd.DataFrame, test: verdicts.ChanceTest | None) -> TableBlock:
    rows = []
    for ranking in [r for r in ranking_order(dsum["ranking"]) if r != "random"]:
        r = dsum[dsum["ranking"] == ranking].iloc[0]
        steps = "–"
        if _finite(r.get("steps_above_random")) and _finite(r.get("steps_below_random")):
            steps = f"{_k(r['steps_above_random'])} / {_k(r['steps_below_random'])}"
            if _finite(r.get("n_steps")):
                steps += f" of {_k(r['n_steps'])}"
        gaps = [_gap(r["min_gap_to_random"], r["min_gap_k"], r["min_gap_ci_low"], r["min_gap_ci_high"]),
                _gap(r["max_gap_to_random"], r["max_gap_k"], r["max_gap_ci_low"], r["max_gap_ci_high"])]
        if not (_finite(r["min_gap_to_random"]) and _finite(r["max_gap_to_random"])):
            gaps = [NOT_MEASURED, NOT_MEASURED]  # the largest gap is never shown without the smallest
        rows.append([_words(ranking), _diff(r["auc_diff"], r["auc_diff_ci_low"], r["auc_diff_ci_high"], r["auc_diff_p_value"]),
                     _words(row_verdict(r, test)),
                     _diff(r["prob_auc_diff"], r["prob_auc_diff_ci_low"], r["prob_auc_diff_ci_high"]),
                     *gaps, steps])
    return TableBlock(
        "Deletion against random, per ranking",
        ["Ranking", "ΔAUC accuracy (95% CI)", "Verdict", "ΔAUC true-class prob. (95% CI)",
         "Smallest gap (points)", "Largest gap (points)", "Steps above / below random"],
        rows,
        "ΔAUC: the ranking's area under the per-image correctness curve minus random's, mean over images, "
        "paired bootstrap 95% interval. Verdict: above random when the interval lies above 0, below random when "
        "below 0, indistinguishable otherwise, not testable when the model is at chance. The per-step gaps are "
        "secondary and shown together; steps count only k whose paired interval excludes 0.",
        text_columns=1,
    )


def _model_verdicts(label: str, group: Group, tables: dict[str, pd.DataFrame]) -> ModelVerdicts:
    """The chance test, warnings and deletion/localization verdicts of one model, in verdicts' words."""
    test = chance_test_of(group)
    if test is not None:
        out = ModelVerdicts(label, verdicts.chance_sentence(test, label), test.at_chance)
    else:
        out = ModelVerdicts(label, f"{label}: chance test not measured (the number of classes or the accuracy "
                                   "before deletion is not in these folders).", False)
    own = model_accuracy_of(group)
    if own is not None:
        out.accuracy = verdicts.accuracy_sentence(own[0], label, own[1])
        out.accuracy_at_chance = own[0].at_chance
    dsum = tables["deletion_summary.csv"]
    dsum = dsum[dsum["series"] == label] if not dsum.empty else dsum
    if not dsum.empty and (dsum["ranking"] != "random").any():
        out.table = _verdict_rows(dsum, test)
        measured = dsum[(dsum["ranking"] != "random") & dsum["verdict"].isin(verdicts.DELETION_VERDICTS)]
        if measured.empty and not (test is not None and test.at_chance):
            out.notes.append("ΔAUC to random and the deletion verdicts: not measured (this folder was written by an "
                             "older ersm-eval; re-run `ersm-eval deletion`).")
        for ranking in [r for r in ranking_order(dsum["ranking"]) if r != "random"]:
            row = dsum[dsum["ranking"] == ranking].iloc[0]
            if row["verdict"] in verdicts.DELETION_VERDICTS or (test is not None and test.at_chance):
                out.sentences.append(verdicts.deletion_sentence(row.to_dict(), test, label))
    diag = tables["energy_diagnostics.csv"]
    diag = diag[diag["series"] == label] if not diag.empty else diag
    if not diag.empty:
        values = dict(zip(diag["metric"], diag["value"].astype(float)))
        center, neighbours = values.get("spearman_center", math.nan), values.get("spearman_neighbours", math.nan)
        if verdicts.follows_position(center, neighbours):
            out.warnings.append(verdicts.position_sentence(center, neighbours, values.get("pairwise_share", math.nan)))
    fraction = _fraction_large(group)
    if fraction is not None and fraction[0]:
        out.boxes = verdicts.uninformative_boxes_sentence(fraction[1])
        out.warnings.append(out.boxes)
    loc = tables["localization.csv"]
    loc = loc[(loc["series"] == label) & (loc["verdict"] != "baseline") & ~loc["map"].isin(BASELINE_MAPS)] if not loc.empty else loc
    out.localization = [verdicts.localization_sentence(r) for r in loc.to_dict("records")]
    return out


def _recorded_boxes(summary: dict[str, Any]) -> tuple[bool, float] | None:
    """The uninformative-boxes finding a sparsity run records: the typed summary's
    ``evaluation["localization"]``, or, in a folder written before the schema, the
    ``sparsity`` block's ``localization``. (uninformative, large-object share) or None."""
    typed = typed_summary(summary)
    if typed is not None:
        found = typed.evaluation.get("localization")
    else:
        block = summary.get("sparsity") if isinstance(summary, dict) else None
        found = block.get("localization") if isinstance(block, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("uninformative"), bool):
        return None
    share = found.get("large_object_share")
    return found["uninformative"], float(share) if _finite(share) else math.nan


def _fraction_large(group: Group) -> tuple[bool, float] | None:
    """(boxes uninformative, share of images whose object covers ≥ 80% of the image), when known.

    Read from summary.json (``uninformative`` with ``large_object_share``), else applied by
    :func:`ersm_eval.verdicts.boxes_uninformative` to a per-image ``object_area_fraction`` column.
    """
    for run, _ in group:
        found = _recorded_boxes(run.summary)
        if found is not None:
            return found
    images = rows_for(group, "per_image.csv")
    if images is not None and "object_area_fraction" in images:
        values = pd.to_numeric(images["object_area_fraction"], errors="coerce").to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size:
            return (verdicts.boxes_uninformative(values),
                    float((values >= verdicts.LARGE_OBJECT_FRACTION).mean()))
    return None


# ---------------------------------------------------------------- tables


def _summary_blocks(summary: pd.DataFrame) -> list[TableBlock]:
    """The headline table (accuracy, chance, keep, deletion ΔAUC and verdict, occlusion) and, where measured, localization."""
    aucs = [c for c in summary.columns if c.startswith("auc_") and not c.startswith("auc_diff") and summary[c].notna().any()]
    show_keep = summary["mean_keep"].notna().any()
    show_diff = (summary["gap_ranking"] != "").any()
    show_occ = summary["occlusion_robustness"].notna().any()
    columns = ["Model", "Accuracy", "Chance"] + (["Mean keep π"] if show_keep else []) + [f"AUC {_words(c[4:])}" for c in aucs]
    columns += ["Headline ranking", "ΔAUC to random (95% CI)", "Verdict"] if show_diff else []
    columns += ["Occlusion robustness"] if show_occ else []
    rows, marks = [], {}
    for r in summary.to_dict("records"):
        mark = ""
        if r["accuracy_source"] and r["accuracy_source"] != "sparsity":
            mark = marks.setdefault(r["accuracy_source"], "†" * (len(marks) + 1))
        chance = "–" if not _finite(r["chance"]) else _pct(r["chance"]) + (" (at chance)" if r["at_chance"] is True else "")
        row = [r["model"], _pct(r["accuracy"]) + mark, chance] + ([_num(r["mean_keep"])] if show_keep else [])
        row += [_num(r[c]) for c in aucs]
        if show_diff:
            if r["gap_ranking"]:
                row += [_words(r["gap_ranking"]), _diff(r["auc_diff"], r["auc_diff_ci_low"], r["auc_diff_ci_high"]),
                        _words(r["verdict"])]
            else:
                row += ["–", "–", "–"]
        row += [_num(r["occlusion_robustness"])] if show_occ else []
        rows.append(row)
    note = "Accuracy: top-1 of the model as trained (sparsity run)" + "".join(f"; {m} {s}" for s, m in marks.items())
    note += ". Chance: 1 / number of classes. AUC: normalized area under the deletion curve."
    if show_diff:
        note += (" ΔAUC: area difference to random deletion of the first of energy, unary, cam and magnitude "
                 "present, with its verdict.")
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
                                 "share of the map inside the object. Compare with the uniform and centre baselines in "
                                 "the localization section."))
    return blocks


def _deletion_table(summary: pd.DataFrame) -> TableBlock:
    rows = []
    for r in summary.to_dict("records"):
        rows.append([r["series"], _words(r["ranking"]), _num(r["auc"]), _pct(r["acc_k0"]),
                     f"{_pct(r['peak_accuracy'])} at k={_k(r['peak_k'])}", _k(r["half_accuracy_k"])])
    return TableBlock("Deletion summary per ranking (deletion_summary.csv)",
                      ["Model", "Ranking", "AUC", "Acc. k=0", "Peak", "Half-accuracy k"], rows, text_columns=2)


def _localization_table(loc: pd.DataFrame) -> TableBlock:
    rows = []
    for r in loc.to_dict("records"):
        baseline = r["verdict"] == "baseline" or r["map"] in BASELINE_MAPS
        excess = "–" if baseline else _diff(r["excess"], r["excess_ci_low"], r["excess_ci_high"])
        rows.append([r["series"], r["map"] + (" (baseline)" if baseline else ""), _words(r["metric"]),
                     _metric_value(r["metric"], r["value"], r["ci_low"], r["ci_high"]), excess,
                     _words(r["verdict"]) if r["verdict"] else NOT_MEASURED])
    return TableBlock("Localization against the uniform and centre baselines (localization.csv)",
                      ["Model", "Map", "Metric", "Value", "Excess over the better baseline (95% CI)", "Verdict"], rows,
                      "A map localizes the object only when the paired 95% interval of its excess over the better of the "
                      "uniform and centre maps lies above 0.", text_columns=3)


def _diagnostics_table(diag: pd.DataFrame) -> TableBlock:
    names = {"pairwise_share": "pairwise share of the energy", "spearman_center": "Spearman ρ of E with centre ranking",
             "spearman_neighbours": "Spearman ρ of E with neighbour count"}
    rows = [[r["series"], names.get(r["metric"], _words(r["metric"])),
             _num(r["value"]) + (f" ({_ci(r['ci_low'], r['ci_high'])})" if _ci(r["ci_low"], r["ci_high"]) else "")]
            for r in diag.to_dict("records")]
    return TableBlock("Energy diagnostics (energy_diagnostics.csv)", ["Model", "Metric", "Value"], rows, text_columns=2)


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


def _rel(path: Path, out_dir: Path) -> str:
    return clean_path(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())


def _source(summary: dict[str, Any]) -> dict[str, str]:
    """Command, label, checkpoint, its hash, data, images and start time of one run folder for the
    provenance table: from the typed summary, or from the top-level keys of a summary.json written
    before the schema (which wrote them under the same names)."""
    typed = typed_summary(summary)
    if typed is not None:
        checkpoint = typed.checkpoint or ", ".join(str(c.get("checkpoint", "")) for c in typed.checkpoints) \
            or str(typed.options.get("checkpoint") or "")
        dataset, options = typed.dataset, typed.options
        fields = {"command": typed.command, "label": typed.label, "sha": typed.checkpoint_sha256,
                  "images": str(typed.n_images), "started": typed.started}
    else:
        def text(key: str) -> str:
            value = summary.get(key)
            return "" if value is None or isinstance(value, (dict, list)) else str(value)

        options = summary.get("options") if isinstance(summary.get("options"), dict) else {}
        dataset = summary.get("dataset") if isinstance(summary.get("dataset"), dict) else {}
        checkpoint = text("checkpoint") or str(options.get("checkpoint") or "")
        fields = {"command": text("command"), "label": text("label"), "sha": text("checkpoint_sha256"),
                  "images": str(dataset.get("n_images") or summary.get("n_images") or ""), "started": text("started")}
    data = " / ".join(str(v) for v in (dataset.get("dataset") or options.get("dataset"),
                                       dataset.get("split") or options.get("split")) if v)
    return {
        "command": fields["command"] or "–",
        "label": fields["label"] or "–",
        "checkpoint": clean_path(checkpoint or "–"),
        "sha": fields["sha"][:12] or "–",
        "data": data or "–",
        "images": fields["images"] or "–",
        "started": fields["started"] or "–",
    }


def _provenance(runs: list[Run], out_dir: Path) -> list[dict[str, Any]]:
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
                    summary = _read_summary(folder / SUMMARY_JSON)  # size, nesting and numbers bounded
                except ReportError:
                    summary = {}
            summary = summary if isinstance(summary, dict) else {}
            rel = _rel(folder, out_dir)
            files = [{"name": name, "href": urllib.parse.quote(_rel(folder / name, out_dir), safe="/.-_~")}
                     for name in KNOWN_TABLES if (folder / name).is_file()]
            source = _source(summary)
            seen[key] = {
                "folder": "this report's folder" if rel == "." else rel,
                **source,
                "files": files,
                "items": [(k, clean_path(v)) for k, v in _flatten(summary)],
                "notes": list(run.notes) if folder == run.path else [],
            }
    return list(seen.values())


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
        self.failures: list[str] = []  # figures that could not be drawn

    def add(self, make: Callable[[], Figure], name: str, caption: str, tight: bool = True) -> FigureBlock | None:
        """Draw and save one figure; a figure that fails is left out with a warning (None)."""
        base, n = name, 2
        while name in self.names:
            name, n = f"{base}-{n}", n + 1
        self.names.add(name)
        try:
            fig = make()
            png, svg = save_figure(fig, self.folder, name, tight=tight)
        except Exception as err:  # noqa: BLE001 - a figure never costs the report, let alone the tables
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            message = f"figure '{name}' could not be drawn ({type(err).__name__}{': ' + detail if detail else ''}); it is left out"
            self.failures.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None
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


def is_own_report(path: Path) -> bool:
    """True when ``path`` is an HTML file this module wrote (its head names ersm-eval as generator)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return GENERATOR.encode() in head


def _check_targets(out_html: Path, figures_dir: Path, runs: list[Run]) -> None:
    """Refuse to replace anything this module did not write, or any input of the report."""
    if out_html.is_dir():
        raise ReportError(f"{out_html} is a folder; pass the HTML file to write (e.g. {out_html / 'report.html'})")
    if out_html.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"{out_html}: the report is an HTML file, so its name must end in .html")
    inputs = {f.resolve() for run in runs for f in run.folders}
    for folder in inputs:
        for name in (*KNOWN_TABLES, SUMMARY_JSON, MAPS_NPZ):
            if (folder / name).resolve() == out_html.resolve():
                raise ReportError(f"{out_html} is an input of this report; choose another --out")
    if out_html.exists() and not is_own_report(out_html):
        raise ReportError(f"{out_html} exists and was not written by ersm-eval; choose another --out "
                          "(the report never replaces a file it did not write)")
    if figures_dir.exists():
        if not figures_dir.is_dir():
            raise ReportError(f"the figures folder {figures_dir} is a file; choose another --out or figures folder")
        if figures_dir.resolve() in inputs:
            raise ReportError(f"the figures folder {figures_dir} is an input run folder; choose another --out")
        mine = (figures_dir / _FIGURES_MARK).is_file() or (out_html.exists() and is_own_report(out_html))
        if any(figures_dir.iterdir()) and not mine:
            raise ReportError(f"the figures folder {figures_dir} exists and was not written by ersm-eval; "
                              "choose another --out (the report never replaces files it did not write)")


def build_report(
    runs: list[Run | str | Path],
    out_html: str | Path,
    figures_dir: str | Path | None = None,
    claims: list[dict] | None = None,
    title: str | None = None,
) -> Path:
    """Write every figure (PNG + SVG) and one self-contained HTML report.

    The page opens with what can be concluded: each model's chance test, warnings (energy
    ranking following position, uninformative boxes) and the ΔAUC verdict of every ranking,
    all in the words of :mod:`ersm_eval.verdicts`. A figure that cannot be drawn is left out
    with a warning on the page; it never stops the report.

    Args:
        runs: loaded run folders (:func:`reports.load_run`) or their paths; several give a comparative
            report. Runs sharing a label (one model's deletion, occlusion and sparsity folders) are
            shown as one model.
        out_html: the HTML file, written atomically (temporary name, then rename). An existing
            file is replaced only when it is a report this function wrote.
        figures_dir: where PNG and SVG files go; default ``<out_html parent>/figures``.
        claims: optional list of ``{"claim": str, "supported": "yes"|"no"|"partly"|"not measured"
            (or True/False/None), "evidence": str}`` rendered as a claims section.
        title: page title; default names the runs.

    Returns:
        The HTML path.

    Raises:
        ReportError: no runs, a malformed claim, an output that would replace a file this
            function did not write (or an input), or a report that cannot be built (the tables
            it reads are never touched).
    """
    if not runs:
        raise ReportError("no runs to report on; pass at least one run folder")
    runs = as_runs(runs)
    out_html = Path(out_html)
    out_dir = out_html.parent
    figures_folder = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    _check_targets(out_html, figures_folder, runs)
    claim_rows = _claims(claims)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        figures_folder.mkdir(parents=True, exist_ok=True)
        (figures_folder / _FIGURES_MARK).write_text("figures written by ersm-eval's report\n", encoding="utf-8")
    except OSError as err:
        raise ReportError(f"cannot write the report under {out_dir}: {err.strerror or err}; choose another --out") from None
    figures = _Figures(figures_folder)
    try:
        html = _render(runs, figures, out_dir, claim_rows, title)
    except ERSMError:
        raise
    except Exception as err:  # noqa: BLE001 - the report is a by-product: say so, never lose the tables
        raise ReportError(f"the report could not be built ({type(err).__name__}: {err}); the tables are unaffected") from err
    atomic_write_text(out_html, html)  # temporary name, then rename; the file follows the user's umask
    return out_html


def _render(runs: list[Run], figures: _Figures, out_dir: Path, claim_rows: list[dict[str, str]], title: str | None) -> str:
    """The page's HTML; figures are saved as they are drawn."""
    runs = unique_labels(runs)
    labels = series_labels(runs)
    groups = model_groups(runs, labels)
    tables = {name: stack(runs, name, labels) for name in KNOWN_TABLES}
    models = list(groups)
    model_verdicts = [_model_verdicts(label, group, tables) for label, group in groups.items()]
    at_chance = {m.label for m in model_verdicts if m.at_chance}
    sections: list[Section] = []

    # deletion
    curves, dsum, agree, diag = (tables[n] for n in ("deletion_curves.csv", "deletion_summary.csv", "ranking_agreement.csv",
                                                      "energy_diagnostics.csv"))
    if _has(curves) or _has(dsum) or _has(agree):
        sec = Section(id="deletion", title="Deletion",
                      intro="Tokens of the final feature map are deleted in the order each ranking gives (first = deleted first) "
                            "and top-1 accuracy is measured after each step; the pooled map is rescaled to the tokens left. "
                            "The verdicts above come from the area between each curve and random's.")
        shown = sorted(at_chance & set(curves["series"])) if _has(curves) else []
        if shown:
            sec.warnings.append(f"{', '.join(shown)}: at chance, so the deletion curves below carry no information.")
        if _has(curves):
            sec.figures.append(figures.add(lambda: plot_deletion_curves(curves, no_information=at_chance), "deletion_curves",
                                           "Accuracy against patches removed, per ranking (bands: 95% CI; random: mean and min–max over seeds)."))
        if _has(dsum):
            sec.readings += _random_readings(dsum)
            sec.figures.append(figures.add(lambda: plot_deletion_summary(dsum), "deletion_summary",
                                           "Area under the deletion curve per ranking, and ΔAUC to random with its 95% CI."))
            sec.tables.append(_deletion_table(dsum))
        if _has(diag):
            for label in pd.unique(diag["series"]):
                values = dict(zip(diag.loc[diag["series"] == label, "metric"], diag.loc[diag["series"] == label, "value"]))
                sec.readings.append(Reading(f"{label}: energy diagnostics", [verdicts.position_sentence(
                    values.get("spearman_center", math.nan), values.get("spearman_neighbours", math.nan),
                    values.get("pairwise_share", math.nan))]))
            sec.tables.append(_diagnostics_table(diag))
        if _has(agree):
            sec.figures.append(figures.add(lambda: plot_ranking_agreement(agree), "ranking_agreement",
                                           "Mean per-image Spearman correlation between the deletion orders of two rankings."))
            sec.readings += [Reading(f"{r.heading}: ranking agreement", r.sentences) for r in _agreement_readings(agree)]
        sections.append(sec)

    # occlusion
    occ, osum = tables["occlusion.csv"], tables["occlusion_summary.csv"]
    if _has(occ) or _has(osum):
        sec = Section(id="occlusion", title="Occlusion",
                      intro="Input regions are covered by an occluder (fill) in a pattern at growing severity. "
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
    loc_table = tables["localization.csv"]
    if any(_has(t) for t in (stats, hist, per_class, per_image, loc_table)):
        sec = Section(id="sparsity", title="Sparsity and localization",
                      intro="How much of the feature map the gate keeps, for which images and classes, and whether what it keeps "
                            "lies on the object, measured beside a uniform and a centre map that know nothing about the image.")
        sec.readings += _sparsity_readings({"sparsity_summary.csv": stats, "per_image.csv": per_image, "per_class_keep.csv": per_class})
        if _has(hist):
            sec.figures.append(figures.add(lambda: plot_keep_histogram(hist), "keep_histogram", "Distribution of per-image keep rates (keep_histogram.csv)."))
        if _has(per_class) and per_class["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_per_class_keep(per_class), "per_class_keep",
                                           "Mean keep probability per class, and class accuracy against it."))
        if _has(per_image) and per_image["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_keep_by_correctness(per_image), "keep_by_correctness",
                                           "Per-image mean keep probability of correctly and wrongly classified images."))
        sec.warnings += [f"{m.label}: {m.boxes}" for m in model_verdicts if m.boxes]
        if _has(loc_table):
            sec.figures.append(figures.add(lambda: plot_localization_baselines(loc_table), "localization",
                                           "Localization against the object mask or box per map, beside the uniform and centre "
                                           "baselines (grey; 95% CI)."))
            sec.readings += [Reading(f"{m.label}: localization", m.localization) for m in model_verdicts if m.localization]
            sec.tables.append(_localization_table(loc_table))
        else:
            loc = localization_rows(stats) if _has(stats) else pd.DataFrame()
            if not loc.empty:
                sec.figures.append(figures.add(lambda: plot_localization(stats), "localization",
                                               "Localization against the object mask or box, per map (95% CI); baselines not measured."))
                sec.readings += [Reading(f"{r.heading}: localization", r.sentences) for r in _localization_readings(loc)]
        if _has(stats):
            sec.tables.append(_sparsity_table(stats))
        sections.append(sec)

    gallery = _gallery_section(runs, figures)
    if gallery is not None:
        sections.append(gallery)

    summary = _summary_blocks(summary_table(runs, labels))
    provenance = _provenance(runs, out_dir)
    try:
        version = metadata.version("ersm-eval")
    except metadata.PackageNotFoundError:
        version = "unknown"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    return env.get_template(_TEMPLATE).render(
        title=title or "ERSM evaluation report: " + ", ".join(models),
        models=models,
        n_folders=len(provenance),
        verdicts=model_verdicts,
        summary=summary,
        claims=claim_rows,
        sections=sections,
        figure_failures=figures.failures,
        provenance=provenance,
        figures_dir=clean_path(os.path.relpath(figures.folder.resolve(), out_dir.resolve())),
        version=version,
    )
