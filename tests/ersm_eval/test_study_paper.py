"""The pilot and backbone tables, from hand-made groups.csv and group_summary.csv."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ersm_eval.studies.paper import MISSING, backbone_table, paper_tables, pilot_table, table_cell, verdict_cell


def _groups(rows):
    return pd.DataFrame([{"group": g, "checkpoint": f"{g}-{s}", "seed": s, "variant": v, "dataset": d,
                          "backbone": b, "image_size": r, "patch_size": p} for g, v, d, b, r, p, s in rows])


def _summary(rows):
    return pd.DataFrame([{"group": g, "metric": m, "mean": mean, "std": std, "n_seeds": n, "ci_low": mean - 0.1,
                          "ci_high": mean + 0.1, "verdict": verdict, "seeds_agreeing": k,
                          "training_variance_measured": n > 1} for g, m, mean, std, n, verdict, k in rows])


PILOT_GROUPS = _groups([
    ("baseline", "baseline", "synthetic", "compact_cnn", 128, 1, 0),
    ("ersm_full", "ersm_full", "synthetic", "compact_cnn", 128, 1, 0),
    ("ersm_unary", "ersm_unary", "synthetic", "compact_cnn", 128, 1, 0),
])
PILOT_SUMMARY = _summary([
    ("baseline", "accuracy", 0.9123, 0.0081, 3, "above_chance", 3),
    ("baseline", "mean_keep", 1.0, 0.0, 3, "no_verdict", 3),
    ("baseline", "cam_sg", 0.004, 0.003, 3, "indistinguishable", 2),
    ("ersm_full", "accuracy", 0.905, 0.012, 3, "above_chance", 3),
    ("ersm_full", "mean_keep", 0.4123, 0.0215, 3, "no_verdict", 3),
    ("ersm_full", "energy_sg", 0.0523, 0.0104, 3, "supports", 2),
    ("ersm_full", "cam_sg", 0.01, 0.002, 3, "supports", 3),
    ("ersm_unary", "accuracy", 0.88, math.nan, 1, "above_chance", 1),
    ("ersm_unary", "mean_keep", 0.5, math.nan, 1, "no_verdict", 1),
])


def test_cells():
    assert table_cell("accuracy", 0.9123, 0.0081, 3) == "91.2 ± 0.8 (3 seeds)"
    assert table_cell("accuracy", 0.88, math.nan, 1) == "88.0 (1 seed)"
    assert table_cell("energy_sg", -0.0523, 0.0104, 2) == "-0.052 ± 0.010 (2 seeds)"
    assert table_cell("loss", 0.41234, 0.02, 3) == "0.412 ± 0.020 (3 seeds)"
    assert table_cell("loss", math.nan, math.nan, 0) == MISSING
    assert verdict_cell("supports", 2, 3) == "supports (2 of 3 seeds)"
    assert verdict_cell("not_testable", 1, 1) == "not testable (1 seed)"
    assert verdict_cell("no_verdict", 3, 3) == MISSING


def test_pilot_table_cells():
    table = pilot_table(PILOT_GROUPS, PILOT_SUMMARY)
    cells = table.cells
    assert list(cells.columns) == ["Variant", "Accuracy (%)", "Mean keep", "Ranking", "SG of own ranking", "Verdict"]
    assert cells.loc["baseline"].tolist() == ["baseline", "91.2 ± 0.8 (3 seeds)", "1.000 ± 0.000 (3 seeds)", "cam",
                                              "+0.004 ± 0.003 (3 seeds)", "indistinguishable (2 of 3 seeds)"]
    # the variant's own ranking (energy), not CAM, although both are measured
    assert cells.loc["ersm_full", "Ranking"] == "energy"
    assert cells.loc["ersm_full", "SG of own ranking"] == "+0.052 ± 0.010 (3 seeds)"
    assert cells.loc["ersm_full", "Verdict"] == "supports (2 of 3 seeds)"
    # one seed, no deletion statistic measured
    assert cells.loc["ersm_unary"].tolist() == ["ersm_unary", "88.0 (1 seed)", "0.500 (1 seed)", MISSING, MISSING, MISSING]
    assert "(ddof = 1)" in table.note and "training variance not measured" in table.note
    numbers = table.numbers.set_index(["row", "column"])
    assert numbers.loc[("ersm_full", "SG of own ranking"), "metric"] == "energy_sg"
    assert numbers.loc[("ersm_full", "SG of own ranking"), "mean"] == 0.0523


def test_pilot_statistic_falls_back_to_auc_diff_and_refuses_unknown():
    summary = PILOT_SUMMARY[~PILOT_SUMMARY["metric"].str.endswith("_sg")]
    summary = pd.concat([summary, _summary([("ersm_full", "energy_auc_diff", 0.1, 0.01, 3, "above_random", 3)])])
    table = pilot_table(PILOT_GROUPS, summary)
    assert "ΔAUC of own ranking" in table.cells.columns
    assert table.cells.loc["ersm_full", "ΔAUC of own ranking"] == "+0.100 ± 0.010 (3 seeds)"
    assert table.cells.loc["ersm_full", "Verdict"] == "above random (3 of 3 seeds)"
    with pytest.raises(ValueError, match="unknown statistic 'auc'; valid: sg, auc_diff"):
        pilot_table(PILOT_GROUPS, summary, statistic="auc")


BACKBONE_GROUPS = _groups([
    ("baseline, backbone=resnet50", "baseline", "cub", "resnet50", 224, 1, 0),
    ("ersm_full, backbone=resnet50", "ersm_full", "cub", "resnet50", 224, 1, 0),
    ("baseline, backbone=convnext_tiny", "baseline", "cub", "convnext_tiny", 224, 1, 0),
    ("l0, backbone=convnext_tiny", "l0", "cub", "convnext_tiny", 224, 1, 0),
])
BACKBONE_SUMMARY = _summary([
    ("baseline, backbone=resnet50", "accuracy", 0.812, 0.004, 3, "above_chance", 3),
    ("baseline, backbone=resnet50", "loss", 0.7012, 0.0101, 3, "no_verdict", 3),
    ("ersm_full, backbone=resnet50", "accuracy", 0.8201, 0.0049, 3, "above_chance", 3),
    ("ersm_full, backbone=resnet50", "loss", 0.6555, math.nan, 1, "no_verdict", 1),
    ("baseline, backbone=convnext_tiny", "accuracy", 0.85, 0.01, 2, "above_chance", 2),
])


def test_backbone_table_cells():
    table = backbone_table(BACKBONE_GROUPS, BACKBONE_SUMMARY)
    cells = table.cells
    assert list(cells.columns) == ["Dataset", "Backbone", "Resolution", "Patch", "baseline accuracy (%)",
                                   "baseline loss", "ersm_full accuracy (%)", "ersm_full loss"]
    assert cells["Backbone"].tolist() == ["convnext_tiny", "resnet50"]
    assert cells.iloc[1].tolist() == ["cub", "resnet50", "224", "1", "81.2 ± 0.4 (3 seeds)", "0.701 ± 0.010 (3 seeds)",
                                      "82.0 ± 0.5 (3 seeds)", "0.655 (1 seed)"]
    assert cells.iloc[0].tolist()[4:] == ["85.0 ± 1.0 (2 seeds)", MISSING, MISSING, MISSING]  # no ERSM run there


def test_backbone_table_refuses_two_groups_in_one_cell():
    groups = pd.concat([BACKBONE_GROUPS, _groups([("baseline, lr=0.1", "baseline", "cub", "resnet50", 224, 1, 0)])])
    with pytest.raises(ValueError, match="are both baseline on cub, resnet50, 224, 1"):
        backbone_table(groups, BACKBONE_SUMMARY)
    with pytest.raises(ValueError, match=r"needs the groups.csv columns \['dataset'\]"):
        backbone_table(BACKBONE_GROUPS.drop(columns=["dataset"]), BACKBONE_SUMMARY)


def test_paper_tables_skip_the_backbone_table_without_its_fields():
    assert [t.name for t in paper_tables(PILOT_GROUPS, PILOT_SUMMARY)] == ["pilot", "backbone"]
    assert [t.name for t in paper_tables(PILOT_GROUPS.drop(columns=["patch_size"]), PILOT_SUMMARY)] == ["pilot"]
