"""The tables behind the glance: per-model summary, and one table per evaluation file.

Every cell is a number in the format of :func:`ersm_eval.verdicts.format_number` or a
verdict in the words of :func:`ersm_eval.verdicts.verdict_words`, read from the tables.
"""

from __future__ import annotations

import pandas as pd

from ersm_eval import verdicts
from reports.figures_localization import BASELINE_MAPS
from reports.html.blocks import TableBlock, metric_value, words
from reports.tables import HEADLINE_LOCALIZATION, MAP_NAMES

__all__ = [
    "deletion_table",
    "diagnostics_table",
    "insertion_table",
    "localization_table",
    "occlusion_table",
    "sparsity_table",
    "summary_blocks",
]

_fmt = verdicts.format_number


def summary_blocks(summary: pd.DataFrame) -> list[TableBlock]:
    """The headline numbers per model (accuracy, chance, keep, deletion AUCs, occlusion) and, where
    measured, localization; the verdicts are in the glance tables, not repeated here."""
    aucs = [c for c in summary.columns if c.startswith("auc_") and not c.startswith("auc_diff") and summary[c].notna().any()]
    show_keep = summary["mean_keep"].notna().any()
    show_occ = summary["occlusion_robustness"].notna().any()
    columns = ["Model", "Accuracy", "Chance"] + (["Mean keep π"] if show_keep else []) + [f"AUC {words(c[4:])}" for c in aucs]
    columns += ["Occlusion robustness"] if show_occ else []
    rows, marks = [], {}
    for r in summary.to_dict("records"):
        mark = ""
        if r["accuracy_source"] and r["accuracy_source"] != "sparsity":
            mark = marks.setdefault(r["accuracy_source"], "†" * (len(marks) + 1))
        row = [r["model"], _fmt(r["accuracy"], "percent") + mark, _fmt(r["chance"], "percent")]
        row += [_fmt(r["mean_keep"])] if show_keep else []
        row += [_fmt(r[c]) for c in aucs]
        row += [_fmt(r["occlusion_robustness"])] if show_occ else []
        rows.append(row)
    note = "Accuracy: top-1 of the model as trained (sparsity run)" + "".join(f"; {m} {s}" for s, m in marks.items())
    note += ". Chance: 1 / number of classes. AUC: normalized area under the deletion curve."
    if show_occ:
        note += " Occlusion robustness: mean of acc(s)/acc(0) over fills, patterns and severities."
    blocks = [TableBlock("Summary per model", columns, rows, note)]
    locs = [(c, metric, t, c[len(metric) + 1:]) for metric, t in HEADLINE_LOCALIZATION for c in summary.columns
            if c.startswith(f"{metric}_") and c[len(metric) + 1:] in MAP_NAMES and summary[c].notna().any()]
    if locs:
        loc_rows = [[r["model"]] + [_fmt(r[c], "percent" if "accuracy" in m or m == "pointing_game" else "plain")
                                    for c, m, _, _ in locs]
                    for r in summary.to_dict("records") if any(_fmt(r[c]) != "n/a" for c, *_ in locs)]
        headers = [f"{words(m)}{f' @ {t:g}' if t is not None else ''} ({map_name})" for _, m, t, map_name in locs]
        blocks.append(TableBlock("Localization per model (map in brackets)", ["Model", *headers], loc_rows,
                                 "Box accuracy: correct class and box IoU > 0.5, box around the largest region above 15% of "
                                 "the map's max. IoU @ 0.5: mask IoU of the map thresholded at half its max. Mass in object: "
                                 "share of the map inside the object. Compare with the uniform and centre baselines in "
                                 "the localization section."))
    return blocks


def deletion_table(summary: pd.DataFrame) -> TableBlock:
    """deletion_summary.csv's curve numbers per model and ranking."""
    rows = [[r["series"], words(r["ranking"]), _fmt(r["auc_lerf"]),
             _fmt(r["auc_morf"]) if r["ranking"] != "random" else "",
             verdicts.format_estimate(r["sg"], r.get("sg_ci_low"), r.get("sg_ci_high"), "signed")
             if r["ranking"] != "random" else "", _fmt(r["acc_k0"], "percent"),
             f"{_fmt(r['peak_accuracy'], 'percent')} at k={_fmt(r['peak_k'], 'count')}", _fmt(r["half_accuracy_k"], "count")]
            for r in summary.to_dict("records")]
    return TableBlock("Deletion summary per ranking (deletion_summary.csv)",
                      ["Model", "Ranking", "AUC least important first (LeRF)", "AUC most important first (MoRF)",
                       "Symmetric gain LeRF − MoRF", "Acc. k=0", "Peak (LeRF)", "Half-accuracy k (LeRF)"], rows,
                      "Random has one order; its area is in the LeRF column.", text_columns=2)


def insertion_table(summary: pd.DataFrame) -> TableBlock:
    """insertion_summary.csv: each ranking's insertion areas, its ΔAUC to random insertion and the verdict."""
    rows = []
    for r in summary.to_dict("records"):
        reference = r["ranking"] == "random"
        rows.append([r["series"], words(r["ranking"]), "random" if reference else "most important first (MoRF)",
                     _fmt(r["auc"]), _fmt(r["prob_auc"]),
                     "" if reference else verdicts.format_estimate(r["auc_diff"], r.get("auc_diff_ci_low"),
                                                                   r.get("auc_diff_ci_high"), "signed"),
                     _fmt(r["acc_k0"], "percent"), "" if reference else verdicts.insertion_verdict_words(r["verdict"])])
    return TableBlock("Insertion summary per ranking (insertion_summary.csv)",
                      ["Model", "Ranking", "Order inserted", "AUC accuracy", "AUC true-class probability",
                       "ΔAUC to random insertion", "Acc. blurred (k=0)", "Verdict"], rows,
                      "The image starts blurred and its pixels come back token by token; a higher area is better. "
                      "ΔAUC: paired over images, 95% interval.", text_columns=3)


def localization_table(loc: pd.DataFrame) -> TableBlock:
    """localization.csv: every map and metric with its excess over the better baseline and its verdict."""
    rows = []
    for r in loc.to_dict("records"):
        baseline = r["verdict"] == "baseline" or r["map"] in BASELINE_MAPS
        excess = "" if baseline else verdicts.format_estimate(r["excess"], r["excess_ci_low"], r["excess_ci_high"], "signed")
        rows.append([r["series"], r["map"], words(r["metric"]), metric_value(r["metric"], r["value"], r["ci_low"], r["ci_high"]),
                     excess, verdicts.verdict_words(r["verdict"])])
    return TableBlock("Localization against the uniform and centre maps (localization.csv)",
                      ["Model", "Map", "Metric", "Value", "Excess over the better trivial map", "Verdict"], rows,
                      "Each map is compared with the better of two maps that know nothing about the image (uniform, "
                      "centre), paired per image, 95% interval.", text_columns=3)


def diagnostics_table(diag: pd.DataFrame) -> TableBlock:
    """energy_diagnostics.csv."""
    names = {"pairwise_share": "pairwise share of the energy", "spearman_center": "Spearman ρ of E with centre ranking",
             "spearman_neighbours": "Spearman ρ of E with neighbour count"}
    rows = [[r["series"], names.get(r["metric"], words(r["metric"])), verdicts.format_estimate(r["value"], r["ci_low"], r["ci_high"])]
            for r in diag.to_dict("records")]
    return TableBlock("Energy diagnostics (energy_diagnostics.csv)", ["Model", "Metric", "Value"], rows, text_columns=2)


def occlusion_table(summary: pd.DataFrame) -> TableBlock:
    """occlusion_summary.csv."""
    rows = [[r["series"], r["fill"], words(r["pattern"]), _fmt(r["auc"]), _fmt(r["acc0"], "percent"),
             _fmt(r["mean_relative_robustness"]), _fmt(r["min_relative_robustness"]),
             verdicts.format_estimate(r["diff_auc_to_first"], r["diff_ci_low"], r["diff_ci_high"], "signed")]
            for r in summary.to_dict("records")]
    return TableBlock("Occlusion summary (occlusion_summary.csv)",
                      ["Model", "Fill", "Pattern", "AUC", "Clean acc.", "Mean rel. robustness", "Min rel. robustness",
                       "AUC − first checkpoint"], rows, text_columns=3)


def sparsity_table(stats: pd.DataFrame) -> TableBlock:
    """sparsity_summary.csv: one row per statistic, one column per model."""
    series = list(pd.unique(stats["series"]))
    threshold_text = stats["threshold"].map(lambda t: f"{t:g}" if _fmt(t) != "n/a" else "")
    keys = list(dict.fromkeys(zip(stats["metric"], stats["map"], threshold_text)))
    rows = []
    for metric, map_name, threshold in keys:
        row = [words(metric), map_name or "n/a", threshold or "n/a"]
        for name in series:
            hit = stats[(stats["series"] == name) & (stats["metric"] == metric) & (stats["map"] == map_name)
                        & (threshold_text == threshold)]
            row.append(metric_value(metric, *hit.iloc[0][["value", "ci_low", "ci_high"]]) if len(hit) else "n/a")
        rows.append(row)
    return TableBlock("Sparsity and mask statistics (sparsity_summary.csv)", ["Metric", "Map", "Threshold", *series], rows,
                      text_columns=3)
