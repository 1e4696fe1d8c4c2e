"""members.csv, group_summary.csv and group_differences.csv from per-image values and groups."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ersm_eval.stats import bootstrap_mean_ci
from ersm_eval.studies.groups import group_checkpoints
from ersm_eval.studies.tables import (
    DIFFERENCE_COLUMNS,
    MEMBER_COLUMNS,
    SUMMARY_COLUMNS,
    read_study_tables,
    study_tables,
)

N = 200


def _groups(spec):
    """spec: variant -> seeds."""
    return group_checkpoints([(f"{v}-{s}", {"variant": v}, {"seed": s}) for v, seeds in spec.items() for s in seeds])


def _study(seed=0):
    rng = np.random.default_rng(seed)
    groups = _groups({"ersm_full": [0, 1, 2], "baseline": [0, 1], "l0": [7]})
    per_image = {}
    for name in groups["checkpoint"]:
        per_image[name] = {
            "accuracy": (rng.random(N) < 0.8).astype(float),
            "mean_keep": rng.random(N),
            "energy_sg": 0.3 + 0.05 * rng.standard_normal(N),
        }
        if name.startswith("ersm"):
            per_image[name]["energy_auc_diff"] = 0.1 + 0.05 * rng.standard_normal(N)
    return per_image, groups


def test_columns_and_rows():
    per_image, groups = _study()
    tables = study_tables(per_image, groups, chance=0.1, n_boot=300)
    assert tuple(tables.members.columns) == MEMBER_COLUMNS
    assert tuple(tables.group_summary.columns) == SUMMARY_COLUMNS
    assert tuple(tables.group_differences.columns) == DIFFERENCE_COLUMNS
    assert len(tables.members) == 6 * 3 + 3  # six checkpoints, three metrics each, plus ΔAUC for three
    summary = tables.group_summary
    assert summary["group"].tolist() == ["baseline"] * 3 + ["ersm_full"] * 4 + ["l0"] * 3
    assert summary["metric"].tolist()[3:7] == ["accuracy", "mean_keep", "energy_auc_diff", "energy_sg"]
    diffs = tables.group_differences
    assert list(zip(diffs["group_a"], diffs["group_b"])) == [("baseline", "ersm_full")] * 3 + [("baseline", "l0")] * 3 \
        + [("ersm_full", "l0")] * 3
    assert "energy_auc_diff" not in set(diffs["metric"])  # only metrics both groups have
    assert set(tables.as_files()) == {"members.csv", "group_summary.csv", "group_differences.csv"}


def test_numbers_by_hand_and_member_intervals_are_image_level():
    per_image, groups = _study()
    tables = study_tables(per_image, groups, chance=0.1, n_boot=300, seed=4)
    members = tables.members.set_index(["checkpoint", "metric"])
    values = per_image["ersm_full-1"]["mean_keep"]
    row = members.loc[("ersm_full-1", "mean_keep")]
    assert row["value"] == pytest.approx(values.mean(), abs=1e-12)
    low, high = bootstrap_mean_ci(values, n_boot=300, seed=4)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((float(low), float(high)), abs=1e-12)
    assert row["seed"] == 1 and row["group"] == "ersm_full"
    seed_means = [per_image[f"ersm_full-{s}"]["mean_keep"].mean() for s in range(3)]
    summary = tables.group_summary.set_index(["group", "metric"]).loc[("ersm_full", "mean_keep")]
    assert summary["mean"] == pytest.approx(np.mean(seed_means), abs=1e-9)
    assert summary["std"] == pytest.approx(np.std(seed_means, ddof=1), abs=1e-9)
    assert summary["n_seeds"] == 3 and bool(summary["training_variance_measured"])
    diff = tables.group_differences.set_index(["group_a", "group_b", "metric"]).loc[("baseline", "ersm_full", "mean_keep")]
    baseline = np.mean([per_image[f"baseline-{s}"]["mean_keep"].mean() for s in range(2)])
    assert diff["diff"] == pytest.approx(baseline - np.mean(seed_means), abs=1e-9)


def test_verdicts_and_seeds_agreeing_follow_the_members():
    per_image, groups = _study()
    tables = study_tables(per_image, groups, chance=0.1, n_boot=300)
    summary = tables.group_summary.set_index(["group", "metric"])
    assert summary.loc[("ersm_full", "energy_sg"), "verdict"] == "supports"
    assert summary.loc[("ersm_full", "energy_sg"), "seeds_agreeing"] == 3
    assert summary.loc[("ersm_full", "energy_auc_diff"), "verdict"] == "above_random"
    assert summary.loc[("baseline", "accuracy"), "verdict"] == "above_chance"
    assert summary.loc[("baseline", "mean_keep"), "verdict"] == "no_verdict"
    for (group, metric), row in summary.iterrows():
        members = tables.members[(tables.members["group"] == group) & (tables.members["metric"] == metric)]
        assert row["seeds_agreeing"] == (members["verdict"] == row["verdict"]).sum()


def test_one_seed_group_is_its_member():
    per_image, groups = _study()
    tables = study_tables(per_image, groups, chance=0.1, n_boot=300)
    solo = tables.group_summary[tables.group_summary["group"] == "l0"]
    assert not solo["training_variance_measured"].any() and solo["std"].isna().all()
    member = tables.members[tables.members["group"] == "l0"]
    np.testing.assert_array_equal(solo["ci_low"].to_numpy(), member["ci_low"].to_numpy())
    np.testing.assert_array_equal(solo["ci_high"].to_numpy(), member["ci_high"].to_numpy())


def test_a_model_at_chance_makes_deletion_not_testable():
    per_image, groups = _study()
    rng = np.random.default_rng(9)
    for s in range(3):
        per_image[f"ersm_full-{s}"]["accuracy"] = (rng.random(N) < 0.1).astype(float)
    tables = study_tables(per_image, groups, chance=0.1, n_boot=300)
    summary = tables.group_summary.set_index(["group", "metric"])
    assert summary.loc[("ersm_full", "accuracy"), "verdict"] == "at_chance"
    assert summary.loc[("ersm_full", "energy_auc_diff"), "verdict"] == "not_testable"
    assert summary.loc[("ersm_full", "energy_sg"), "verdict"] == "not_testable"
    assert summary.loc[("baseline", "energy_sg"), "verdict"] == "supports"
    without_chance = study_tables(per_image, groups, n_boot=300).group_summary.set_index(["group", "metric"])
    assert without_chance.loc[("ersm_full", "accuracy"), "verdict"] == "no_verdict"


def test_deterministic():
    per_image, groups = _study()
    first = study_tables(per_image, groups, chance=0.1, n_boot=200, seed=3)
    again = study_tables(per_image, groups, chance=0.1, n_boot=200, seed=3)
    for a, b in zip(first.as_files().values(), again.as_files().values()):
        pd.testing.assert_frame_equal(a, b)


def test_bad_inputs():
    per_image, groups = _study()
    with pytest.raises(ValueError, match="no per-image values for the checkpoints 'l0-7'"):
        study_tables({k: v for k, v in per_image.items() if k != "l0-7"}, groups)
    with pytest.raises(ValueError, match="that no group holds: 'stranger'"):
        study_tables({**per_image, "stranger": {"accuracy": np.ones(N)}}, groups)
    short = {**per_image, "l0-7": {**per_image["l0-7"], "mean_keep": np.ones(N - 1)}}
    with pytest.raises(ValueError, match="same images, but the value counts differ"):
        study_tables(short, groups)
    lacking = {**per_image, "ersm_full-2": {k: v for k, v in per_image["ersm_full-2"].items() if k != "energy_auc_diff"}}
    with pytest.raises(ValueError, match=r"group 'ersm_full': checkpoints 'ersm_full-2' lack the metric 'energy_auc_diff'"):
        study_tables(lacking, groups)
    nan = {**per_image, "l0-7": {**per_image["l0-7"], "mean_keep": np.full(N, math.nan)}}
    with pytest.raises(ValueError, match="NaN or infinite"):
        study_tables(nan, groups)
    with pytest.raises(ValueError, match="different chance levels"):
        study_tables(per_image, groups, chance={"ersm_full-0": 0.1, "ersm_full-1": 0.5})


def test_read_study_tables(tmp_path):
    per_image, groups = _study()
    tables = study_tables(per_image, groups, chance=0.1, n_boot=100)
    with pytest.raises(ValueError, match="study folder not found"):
        read_study_tables(tmp_path / "nowhere")
    groups.to_csv(tmp_path / "groups.csv", index=False)
    with pytest.raises(ValueError, match="is not a study folder: it has no group_summary.csv"):
        read_study_tables(tmp_path)
    tables.group_summary.drop(columns=["verdict"]).to_csv(tmp_path / "group_summary.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the columns \['verdict'\]"):
        read_study_tables(tmp_path)
    for name, table in tables.as_files().items():
        table.to_csv(tmp_path / name, index=False)
    read = read_study_tables(tmp_path)
    assert set(read) == {"groups.csv", "members.csv", "group_summary.csv", "group_differences.csv"}
    pd.testing.assert_series_equal(read["group_summary.csv"]["mean"], tables.group_summary["mean"])
