"""The at-a-glance table of one model, built from hand-made tables and summary records."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ersm_eval import verdicts
from ersm_eval.schema import TABLES
from reports.html.glance import model_glance
from reports.tables import Run, model_groups, series_labels, stack


def _deletion_summary(rows: list[dict]) -> pd.DataFrame:
    full = [{c: (row.get(c, "" if c in ("checkpoint", "ranking", "verdict") else math.nan)) for c in TABLES["deletion_summary.csv"]}
            for row in rows]
    return pd.DataFrame(full, columns=TABLES["deletion_summary.csv"])


def _glance(tables: dict[str, pd.DataFrame], summary: dict, label: str = "m"):
    run = Run(path=Path("run"), label=label, summary=summary, tables=tables)
    labels = series_labels([run])
    group = model_groups([run], labels)[label]
    return model_glance(label, group, {name: stack([run], name, labels) for name in TABLES})


def _rows(glance) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in glance.table.rows}


def _curves(accuracy: float) -> pd.DataFrame:
    return pd.DataFrame([{"checkpoint": "c", "ranking": "random", "seed": 0, "k": 0, "fraction_removed": 0.0,
                          "n_images": 40, "accuracy": accuracy, "ci_low": 0.0, "ci_high": 1.0, "mean_true_prob": 0.5}])


def test_each_ranking_gets_its_own_verdict_in_its_row():
    summary = _deletion_summary([
        dict(checkpoint="c", ranking="energy", sg=0.1, sg_ci_low=0.05, sg_ci_high=0.15, verdict="supports"),
        dict(checkpoint="c", ranking="cam", sg=-0.1, sg_ci_low=-0.15, sg_ci_high=-0.05, verdict="contradicts"),
        dict(checkpoint="c", ranking="center", sg=0.0, sg_ci_low=-0.05, sg_ci_high=0.05,
             verdict="indistinguishable"),
        dict(checkpoint="c", ranking="random", auc_lerf=0.5, auc_morf=0.5, sg=0.0),
    ])
    test = verdicts.chance_test(36, 40, 4)
    glance = _glance({"deletion_summary.csv": summary, "deletion_curves.csv": _curves(0.9)},
                     {"chance_test": test.as_dict(), "verdict_sentences": {"chance": "c.", "rankings": {"cam": "cam."}}})
    rows = _rows(glance)
    assert rows["Deletion, both orders: energy"] == ["symmetric gain (least − most important first) +0.100 (95% CI +0.050 to +0.150)",
                                                 verdicts.verdict_words("supports")]
    assert rows["Deletion, both orders: cam"] == ["symmetric gain (least − most important first) -0.100 (95% CI -0.150 to -0.050)",
                                              verdicts.verdict_words("contradicts")]
    assert rows["Deletion, both orders: center"][1] == verdicts.verdict_words("indistinguishable")
    assert "Deletion, both orders: random" not in rows
    assert rows["Accuracy before deletion (k = 0)"] == ["90.0% (95% CI 76.9% to 96.0%) on 40 images; chance 25.0%",
                                                        "above chance"]
    assert not glance.at_chance and glance.warnings == []
    assert glance.sentences == ["c.", "cam."]  # the recorded sentences, as written, in ranking order
    assert [r[0] for r in glance.details.rows] == ["energy", "cam", "center"]


def test_a_model_at_chance_says_so_and_its_rankings_are_not_testable():
    summary = _deletion_summary([
        dict(checkpoint="c", ranking="energy", sg=0.1, sg_ci_low=0.05, sg_ci_high=0.15, verdict="not_testable"),
        dict(checkpoint="c", ranking="random", auc_lerf=0.5, auc_morf=0.5, sg=0.0),
    ])
    test = verdicts.chance_test(11, 40, 4)
    assert test.at_chance
    glance = _glance({"deletion_summary.csv": summary, "deletion_curves.csv": _curves(11 / 40)}, {"chance_test": test.as_dict()})
    rows = _rows(glance)
    assert rows["Accuracy before deletion (k = 0)"][1] == "at chance"
    assert rows["Deletion, both orders: energy"][1] == "not testable (model at chance)"
    assert glance.at_chance


def test_verdicts_are_read_never_recomputed():
    # an interval above 0 with the verdict the evaluation wrote: the glance shows what was written
    summary = _deletion_summary([dict(checkpoint="c", ranking="energy", sg=0.1, sg_ci_low=0.05,
                                      sg_ci_high=0.15, verdict="indistinguishable")])
    assert _rows(_glance({"deletion_summary.csv": summary}, {}))["Deletion, both orders: energy"][1] == verdicts.verdict_words("indistinguishable")
    summary.loc[0, "verdict"] = ""
    assert _rows(_glance({"deletion_summary.csv": summary}, {}))["Deletion, both orders: energy"][1] == verdicts.NOT_MEASURED


def test_localization_row_per_map_and_no_accuracy():
    rows = []
    for map_name, verdict_list in (("keep", ["localizes", "does_not_localize"]), ("cam", ["does_not_localize"] * 2)):
        for metric, verdict in zip(("mass_in_object", "pointing_game"), verdict_list):
            rows.append(dict(checkpoint="c", map=map_name, metric=metric, value=0.4, ci_low=0.3, ci_high=0.5,
                             excess=0.02, excess_ci_low=-0.01, excess_ci_high=0.05, verdict=verdict))
    for metric in ("mass_in_object", "pointing_game"):
        rows.append(dict(checkpoint="c", map="uniform", metric=metric, value=0.3, ci_low=0.2, ci_high=0.4,
                         excess=math.nan, excess_ci_low=math.nan, excess_ci_high=math.nan, verdict="baseline"))
    loc = pd.DataFrame(rows, columns=TABLES["localization.csv"])
    glance = _glance({"localization.csv": loc}, {"evaluation": {"localization": {"uninformative": True,
                                                                                 "large_object_share": 0.6}}})
    found = _rows(glance)
    assert found["Localization: keep map"] == ["mass in object 0.400, +0.020 (95% CI -0.010 to +0.050) over the better trivial map",
                                               "localizes on 1 of 2 metrics"]
    assert found["Localization: cam map"][1] == "does not localize on any of 2 metrics"
    assert "Localization: uniform map" not in found
    assert found["Accuracy against chance"] == [verdicts.NOT_MEASURED, verdicts.NOT_MEASURED]
    assert found["Warning"] == [verdicts.uninformative_boxes_sentence(0.6), ""]
