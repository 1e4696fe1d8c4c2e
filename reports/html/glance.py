"""Each model at a glance: accuracy against chance, every ranking's verdict, localization, warnings.

The table opens the report. Every verdict in it is the one the evaluation wrote (the
``verdict`` columns of deletion_summary.csv and localization.csv, the chance test and the
sentences of summary.json), put into words by :mod:`ersm_eval.verdicts`; nothing is
re-derived here. The evaluation's own sentences and the secondary numbers of each ranking
sit behind the table, folded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ersm_eval import verdicts
from reports.figures_localization import BASELINE_MAPS
from reports.figures_style import ranking_order
from reports.html.blocks import TableBlock, words
from reports.tables import Group, model_accuracy_of, recorded, recorded_chance_test

__all__ = ["Glance", "model_glance"]

_HEADLINE_METRIC = "mass_in_object"  # the localization metric whose excess the glance table shows


@dataclass
class Glance:
    """What the page says first about one model."""

    label: str
    table: TableBlock  # one row per finding: what, the numbers, the verdict
    at_chance: bool  # ChanceTest.at_chance of the accuracy before deletion: the deletion curves carry no information
    warnings: list[str] = field(default_factory=list)  # also rows of the table
    sentences: list[str] = field(default_factory=list)  # the evaluation's sentences, shown folded
    details: TableBlock | None = None  # secondary deletion numbers per ranking, shown folded


def _accuracy_row(what: str, test: verdicts.ChanceTest) -> list[str]:
    result = (f"{verdicts.format_estimate(test.accuracy, test.ci_low, test.ci_high, 'percent')} on {test.n_images} "
              f"images; chance {verdicts.format_number(test.chance, 'percent')}")
    return [what, result, verdicts.chance_words(test)]


def _deletion_details(rows: pd.DataFrame) -> TableBlock:
    out = []
    for r in rows.to_dict("records"):
        against = [verdicts.format_estimate(r[f"auc_diff_{o}"], r[f"auc_diff_{o}_ci_low"], r[f"auc_diff_{o}_ci_high"],
                                            "signed") for o in ("lerf", "morf")]
        gaps = [f"{verdicts.format_number(r[f'{w}_gap_to_random'], 'points')} at k={verdicts.format_number(r[f'{w}_gap_k'], 'count')} "
                f"({verdicts.format_interval(r[f'{w}_gap_ci_low'], r[f'{w}_gap_ci_high'], 'points')})" for w in ("min", "max")]
        steps = (f"{verdicts.format_number(r['steps_above_random'], 'count')} / "
                 f"{verdicts.format_number(r['steps_below_random'], 'count')} of {verdicts.format_number(r['n_steps'], 'count')}")
        out.append([words(r["ranking"]), *against,
                    verdicts.format_estimate(r["prob_sg"], r["prob_sg_ci_low"], r["prob_sg_ci_high"], "signed"),
                    verdicts.format_estimate(r["sg_minus_center"], r["sg_minus_center_ci_low"],
                                             r["sg_minus_center_ci_high"], "signed"),
                    *gaps, steps])
    return TableBlock(
        "Deletion, secondary numbers per ranking",
        ["Ranking", "ΔAUC to random, least important first (LeRF)", "ΔAUC to random, most important first (MoRF)",
         "Symmetric gain of the true-class prob.", "Symmetric gain − center's", "Smallest gap of LeRF to random (points)",
         "Largest gap of LeRF to random (points)", "LeRF steps with the interval above / under random"],
        out, "Per-step gaps are those of the LeRF order (least important first) against random deletion, shown "
        "together; a step counts only when its paired 95% interval excludes 0.")


def model_glance(label: str, group: Group, tables: dict[str, pd.DataFrame]) -> Glance:
    """The at-a-glance table of one model, from its stacked tables and recorded summaries.

    Args:
        label: the model's display label (the ``series`` of the stacked tables).
        group: the (run, checkpoint) pairs shown as this model.
        tables: every table stacked over the runs (:func:`reports.tables.stack`).
    """
    rows: list[list[str]] = []
    sentences: list[str] = []
    own = model_accuracy_of(group)
    if own is not None:
        rows.append(_accuracy_row("Accuracy of the model as trained", own[0]))
        sentences.append(verdicts.accuracy_sentence(own[0], label, own[1]))
    test = recorded_chance_test(group)
    recorded_sentences = recorded(group, "verdict_sentences") or {}
    if test is not None:
        rows.append(_accuracy_row("Accuracy before deletion (k = 0)", test))
    if recorded_sentences.get("chance"):
        sentences.append(recorded_sentences["chance"])
    if own is None and test is None:
        rows.append(["Accuracy against chance", verdicts.NOT_MEASURED, verdicts.NOT_MEASURED])

    details = None
    dsum = tables["deletion_summary.csv"]
    dsum = dsum[(dsum["series"] == label) & (dsum["ranking"] != "random")]
    if not dsum.empty:
        order = ranking_order(dsum["ranking"])
        dsum = dsum.set_index("ranking").loc[order].reset_index()
        for r in dsum.to_dict("records"):
            rows.append([f"Deletion, both orders: {words(r['ranking'])}",
                         "symmetric gain (least − most important first) "
                         + verdicts.format_estimate(r["sg"], r["sg_ci_low"], r["sg_ci_high"], "signed"),
                         verdicts.verdict_words(r["verdict"])])
        ranking_sentences = recorded_sentences.get("rankings") or {}
        sentences += [ranking_sentences[r] for r in order if ranking_sentences.get(r)]
        details = _deletion_details(dsum)

    loc = tables["localization.csv"]
    loc = loc[(loc["series"] == label) & (loc["verdict"] != "baseline") & ~loc["map"].isin(BASELINE_MAPS)]
    for map_name in pd.unique(loc["map"]):
        part = loc[loc["map"] == map_name]
        head = part[part["metric"] == _HEADLINE_METRIC]
        head = head if not head.empty else part
        r = head.iloc[0]
        result = (f"{words(r['metric'])} {verdicts.format_number(r['value'])}, "
                  f"{verdicts.format_estimate(r['excess'], r['excess_ci_low'], r['excess_ci_high'], 'signed')} over the better trivial map")
        rows.append([f"Localization: {map_name} map", result, verdicts.localization_summary(part["verdict"])])

    warnings: list[str] = []
    energy = recorded(group, "energy_diagnostics")
    position = recorded_sentences.get("position")
    if isinstance(energy, dict) and position:
        (warnings if energy.get("follows_position") else sentences).append(position)
    randomized = tables.get("map_randomization.csv")
    if randomized is not None and not randomized.empty:
        from ersm_eval.randomization import randomization_warning  # torch only where the check was run

        own = randomized[randomized["series"] == label]
        for map_name in pd.unique(own["map"]):
            warning = randomization_warning(own, str(map_name))
            if warning:
                warnings.append(warning)
    boxes = recorded(group, "evaluation", "localization")
    if isinstance(boxes, dict) and boxes.get("uninformative") is True:
        warnings.append(verdicts.uninformative_boxes_sentence(boxes.get("large_object_share")))
    rows += [["Warning", text, ""] for text in warnings]

    table = TableBlock(f"{label} at a glance", ["Finding", "Numbers", "Verdict"], rows, text_columns=3)
    return Glance(label, table, bool(test is not None and test.at_chance), warnings, sentences, details)
