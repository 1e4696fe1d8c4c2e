"""The numbers of each evaluation in sentences, per model: shown folded behind the tables.

They describe values (a mean, a range, which ranking agrees most); none states a verdict,
and any comparison with zero is put into words by :mod:`ersm_eval.verdicts`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ersm_eval import verdicts
from reports.figures_agreement import agreement_matrix
from reports.html.blocks import Reading, metric_value, words

__all__ = ["agreement_readings", "occlusion_readings", "random_readings", "sparsity_readings"]

_fmt = verdicts.format_number


def random_readings(summary: pd.DataFrame) -> list[Reading]:
    """The reference: random deletion's AUC per model (numbers only)."""
    out = []
    for series in pd.unique(summary["series"]):
        rows = summary[(summary["series"] == series) & (summary["ranking"] == "random")]
        if rows.empty:
            continue
        row = rows.iloc[0]
        seeds = int(row["n_seeds"]) if _fmt(row["n_seeds"]) != "n/a" else 1
        text = f"Random deletion (mean of {seeds} seed{'s' if seeds != 1 else ''}) has AUC {_fmt(row['auc_lerf'])}"
        if _fmt(row["half_accuracy_k"]) != "n/a":
            text += f" and loses half of the k=0 accuracy at k={_fmt(row['half_accuracy_k'], 'count')}"
        out.append(Reading(str(series), [text + "."]))
    return out


def agreement_readings(agreement: pd.DataFrame) -> list[Reading]:
    """Which rankings order the tokens alike, per model (ranking_agreement.csv)."""
    out = []
    for series in pd.unique(agreement["series"]):
        matrix = agreement_matrix(agreement[agreement["series"] == series])
        sentences = []
        pivot = "energy" if "energy" in matrix.index else ("unary" if "unary" in matrix.index else None)
        if pivot:
            others = matrix.loc[pivot].drop([pivot, "random"], errors="ignore").dropna()
            if len(others) >= 2:
                hi, lo = others.idxmax(), others.idxmin()
                sentences.append(f"The {pivot} order agrees most with {words(hi)} (mean Spearman ρ = {_fmt(others[hi], digits=2)}) "
                                 f"and least with {words(lo)} (ρ = {_fmt(others[lo], digits=2)}).")
            elif len(others) == 1:
                sentences.append(f"The {pivot} order has mean Spearman ρ = {_fmt(others.iloc[0], digits=2)} with {words(others.index[0])}.")
        if "random" in matrix.index:
            rnd = matrix.loc["random"].drop("random").dropna()
            if len(rnd):
                top = float(rnd.abs().max())
                sentences.append(f"Random orders correlate with every other ranking at |ρ| ≤ {_fmt(top, digits=2)} "
                                 "(unrelated orders give values near 0).")
        if sentences:
            out.append(Reading(str(series), sentences))
    return out


def occlusion_readings(occlusion: pd.DataFrame, summary: pd.DataFrame) -> list[Reading]:
    """Robustness to occlusion per model (occlusion.csv, occlusion_summary.csv)."""
    out = []
    for series in pd.unique(pd.concat([occlusion["series"], summary["series"]])):
        sentences = []
        summ = summary[summary["series"] == series]
        if not summ.empty:
            mean_rr = summ["mean_relative_robustness"].mean()
            worst = summ.loc[summ["min_relative_robustness"].idxmin()] if summ["min_relative_robustness"].notna().any() else None
            text = f"On average over {len(summ)} fill × pattern combinations it keeps {_fmt(mean_rr, 'percent', 0)} of its clean accuracy (mean relative robustness {_fmt(mean_rr, digits=2)})"
            if worst is not None:
                text += (f"; the hardest is {words(worst['pattern'])} with {worst['fill']} fill, down to "
                         f"{_fmt(worst['min_relative_robustness'], 'percent', 0)} of clean accuracy")
            sentences.append(text + ".")
            diffs = summ[summ["diff_auc_to_first"].notna()]
            if not diffs.empty:
                d = diffs["diff_auc_to_first"].mean()
                above, below, total = verdicts.step_counts(diffs["diff_ci_low"], diffs["diff_ci_high"])
                sentences.append(f"Its occlusion AUC differs from the first checkpoint's by {_fmt(d, 'signed')} on average; "
                                 f"the 95% interval lies above zero for {above} and below zero for {below} of {total} combinations.")
        occ = occlusion[occlusion["series"] == series]
        if not occ.empty:
            top = occ["severity"].max()
            at = occ[occ["severity"] == top]
            sentences.append(f"At the highest severity ({top:g}) accuracy ranges from {_fmt(at['accuracy'].min(), 'percent')} "
                             f"to {_fmt(at['accuracy'].max(), 'percent')} across patterns and fills.")
        out.append(Reading(str(series), sentences))
    return out


def _find_metric(stats: pd.DataFrame, parts: tuple[str, ...], threshold: float | None = None) -> pd.Series | None:
    rows = stats[stats["metric"].map(lambda m: all(w in m for w in parts))]
    if threshold is not None:
        close = rows[np.isclose(rows["threshold"].astype(float), threshold) | rows["metric"].str.contains(str(threshold))]
        rows = close if not close.empty else rows
    return rows.iloc[0] if not rows.empty else None


def sparsity_readings(runs_tables: dict[str, pd.DataFrame]) -> list[Reading]:
    """Keep rates per model (sparsity_summary.csv, per_image.csv, per_class_keep.csv)."""
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
            text = f"Mean keep probability π is {metric_value('mean_keep', r['value'], r['ci_low'], r['ci_high'])}"
        elif not img.empty and img["mean_keep"].notna().any():
            text = f"Mean keep probability π is {_fmt(img['mean_keep'].mean())}"
        else:
            text = ""
        below = _find_metric(st, ("below",), 0.5) if not st.empty else None
        if text and below is not None:
            text += f"; {_fmt(below['value'], 'percent', 0)} of tokens have π below {below['threshold']:g}" if _fmt(below["threshold"]) != "n/a" \
                else f"; the share of tokens below the threshold is {_fmt(below['value'], 'percent', 0)}"
        if text:
            sentences.append(text + ".")
        right_row = st[(st["metric"] == "mean_keep_correct")]
        wrong_row = st[(st["metric"] == "mean_keep_wrong")]
        gap_row = st[(st["metric"] == "keep_gap_correct_minus_wrong")]
        if len(right_row) and len(wrong_row):
            text = (f"Correctly classified images keep {metric_value('keep', *right_row.iloc[0][['value', 'ci_low', 'ci_high']])} "
                    f"on average, misclassified ones {metric_value('keep', *wrong_row.iloc[0][['value', 'ci_low', 'ci_high']])}")
            if len(gap_row) and _fmt(gap_row.iloc[0]["ci_low"]) != "n/a":
                g = gap_row.iloc[0]
                text += (f"; the difference {verdicts.format_estimate(g['value'], g['ci_low'], g['ci_high'], 'signed')} "
                         + verdicts.zero_words(g["ci_low"], g["ci_high"]))
            sentences.append(text + ".")
        elif not img.empty and img["mean_keep"].notna().any():
            right, wrong = img[img["correct"]], img[~img["correct"]]
            if len(right) and len(wrong):
                sentences.append(f"Correctly classified images keep {_fmt(right['mean_keep'].mean())} on average (n={len(right)}), "
                                 f"misclassified ones {_fmt(wrong['mean_keep'].mean())} (n={len(wrong)}).")
        cls = per_class[(per_class["series"] == series)].dropna(subset=["mean_keep"])
        if len(cls) >= 2 and _fmt(cls["mean_keep"].min()) != _fmt(cls["mean_keep"].max()):
            lo, hi = cls.loc[cls["mean_keep"].idxmin()], cls.loc[cls["mean_keep"].idxmax()]
            sentences.append(f"Per class, the keep rate ranges from {_fmt(lo['mean_keep'])} ({words(str(lo['class_name']))}) "
                             f"to {_fmt(hi['mean_keep'])} ({words(str(hi['class_name']))}).")
        acc = st[st["metric"] == "accuracy"]
        if not acc.empty:
            r = acc.iloc[0]
            sentences.insert(0, f"Top-1 accuracy is {metric_value('accuracy', r['value'], r['ci_low'], r['ci_high'])}.")
        if sentences:
            out.append(Reading(str(series), sentences))
    return out
