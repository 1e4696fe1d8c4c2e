"""Group verdicts and their sentences, on hand-made rows."""

from __future__ import annotations

import math

import pytest

from ersm_eval.studies.verdicts import (
    NO_VERDICT,
    ONE_SEED_NOTE,
    accuracy_verdict,
    agreement_note,
    difference_sentence,
    difference_verdict,
    format_value,
    group_sentence,
    group_verdict,
    metric_kind,
    order_verdict,
    seeds_agreeing,
    seeds_note,
)


@pytest.mark.parametrize("metric, kind", [
    ("accuracy", "accuracy"), ("energy_auc_diff", "deletion"), ("cam_sg", "order"),
    ("localization_excess", "localization"), ("keep_localization_excess", "localization"),
    ("mean_keep", "descriptive"), ("loss", "descriptive"), ("energy_auc", "descriptive"),
])
def test_metric_kinds(metric, kind):
    assert metric_kind(metric) == kind


def test_accuracy_against_chance():
    assert accuracy_verdict(0.15, 0.30, 0.1) == "above_chance"
    assert accuracy_verdict(0.01, 0.05, 0.1) == "below_chance"
    assert accuracy_verdict(0.05, 0.15, 0.1) == "at_chance"
    assert accuracy_verdict(0.1, 0.2, 0.1) == "at_chance"  # touching chance is not above it
    assert accuracy_verdict(math.nan, math.nan, 0.1) == "at_chance"
    assert accuracy_verdict(0.5, 0.6, None) == NO_VERDICT


def test_order_and_deletion_rules_and_not_testable():
    assert order_verdict(0.01, 0.05, False) == "supports"
    assert order_verdict(-0.05, -0.01, False) == "contradicts"
    assert order_verdict(-0.01, 0.05, False) == "indistinguishable"
    assert order_verdict(0.0, 0.05, False) == "indistinguishable"  # touching 0
    assert order_verdict(0.01, 0.05, True) == "not_testable"
    assert group_verdict("energy_sg", 0.01, 0.05) == "supports"
    assert group_verdict("energy_auc_diff", 0.01, 0.05) == "above_random"
    assert group_verdict("energy_auc_diff", -0.05, -0.01) == "below_random"
    assert group_verdict("energy_auc_diff", 0.01, 0.05, at_chance=True) == "not_testable"
    assert group_verdict("localization_excess", 0.01, 0.05) == "localizes"
    assert group_verdict("localization_excess", -0.01, 0.05) == "does_not_localize"
    assert group_verdict("accuracy", 0.5, 0.6, chance=0.1) == "above_chance"
    assert group_verdict("mean_keep", 0.5, 0.6) == NO_VERDICT


def test_difference_rule_and_seed_counts():
    assert difference_verdict(0.01, 0.02) == "higher"
    assert difference_verdict(-0.02, -0.01) == "lower"
    assert difference_verdict(-0.01, 0.02) == "indistinguishable"
    assert seeds_agreeing("supports", ["supports", "indistinguishable", "supports"]) == 2
    assert seeds_note(3) == "3 seeds" and seeds_note(1) == ONE_SEED_NOTE == "1 seed: training variance not measured"
    assert agreement_note(2, 3) == "2 of 3 seeds alone reach this verdict"
    assert agreement_note(1, 3) == "1 of 3 seeds alone reaches this verdict"
    assert agreement_note(1, 1) == ONE_SEED_NOTE


def test_formats():
    assert format_value("accuracy", 0.9123) == "91.2"
    assert format_value("energy_sg", 0.0523) == "+0.052"
    assert format_value("energy_sg", -0.0523) == "-0.052"
    assert format_value("mean_keep", 0.4123) == "0.412"
    assert format_value("mean_keep", float("nan")) == "n/a"


def _row(**values):
    row = {"group": "ersm_full", "metric": "energy_sg", "mean": 0.052, "std": 0.0104, "n_seeds": 3,
           "ci_low": 0.031, "ci_high": 0.07, "verdict": "supports", "seeds_agreeing": 3}
    row.update(values)
    return row


def test_group_sentence_supports_with_seed_agreement():
    assert group_sentence(_row()) == (
        "ersm_full, energy_sg: +0.052 ± 0.010 over 3 seeds (two-level 95% CI +0.031 to +0.070): the data support "
        "the ranking's order (what it calls unimportant is less needed than what it calls important); 3 of 3 seeds "
        "alone reach this verdict."
    )


def test_group_sentence_cannot_tell():
    row = _row(ci_low=-0.01, verdict="indistinguishable", seeds_agreeing=1)
    assert group_sentence(row).endswith(": cannot tell whether the ranking's order is right; 1 of 3 seeds alone "
                                        "reaches this verdict.")
    row = _row(metric="energy_auc_diff", ci_low=-0.01, verdict="indistinguishable", seeds_agreeing=2)
    assert "cannot tell the ranking from random deletion; 2 of 3 seeds alone reach this verdict." in group_sentence(row)
    row = _row(metric="accuracy", mean=0.12, std=0.01, ci_low=0.08, ci_high=0.16, verdict="at_chance")
    assert group_sentence(row, chance=0.1) == (
        "ersm_full, accuracy: 12.0% ± 1.0 points over 3 seeds (two-level 95% CI 8.0% to 16.0%): cannot tell the "
        "model from chance (10.0%); 3 of 3 seeds alone reach this verdict."
    )


def test_group_sentence_one_seed_says_training_variance_not_measured():
    row = _row(n_seeds=1, std=float("nan"), seeds_agreeing=1)
    text = group_sentence(row)
    assert text.startswith("ersm_full, energy_sg: +0.052 on 1 seed (95% CI +0.031 to +0.070 over images only; "
                           "training variance not measured): the data support")
    assert "of 1 seeds" not in text and "±" not in text


def test_group_sentence_without_verdict_describes_only():
    row = _row(metric="mean_keep", mean=0.41, std=0.02, ci_low=0.38, ci_high=0.44, verdict=NO_VERDICT)
    assert group_sentence(row) == "ersm_full, mean_keep: 0.410 ± 0.020 over 3 seeds (two-level 95% CI 0.380 to 0.440)."


def test_difference_sentences():
    row = {"group_a": "ersm_full", "group_b": "l0", "metric": "energy_sg", "diff": 0.03, "ci_low": 0.01, "ci_high": 0.05}
    assert difference_sentence(row) == ("ersm_full − l0, energy_sg: +0.030 (two-level 95% CI +0.010 to +0.050): "
                                         "ersm_full is higher.")
    row.update(diff=-0.3, ci_low=-0.5, ci_high=-0.1, metric="accuracy")
    assert difference_sentence(row) == ("ersm_full − l0, accuracy: -30.0 points (two-level 95% CI -50.0 to -10.0): "
                                        "l0 is higher.")
    row.update(ci_high=0.1)
    assert difference_sentence(row).endswith("cannot tell the two groups apart.")


def test_difference_of_single_checkpoints_says_its_interval_is_over_images():
    row = {"group_a": "baseline", "group_b": "ersm_full", "metric": "accuracy", "diff": 0.02, "ci_low": -0.01,
           "ci_high": 0.05, "n_seeds_a": 1, "n_seeds_b": 1}
    assert difference_sentence(row) == ("baseline − ersm_full, accuracy: +2.0 points (95% CI -1.0 to +5.0 over images "
                                         "only; training variance not measured): cannot tell baseline and ersm_full apart.")
    row.update(n_seeds_b=3)  # one side has seeds: the two-level interval, the groups' words
    assert difference_sentence(row) == ("baseline − ersm_full, accuracy: +2.0 points (two-level 95% CI -1.0 to +5.0): "
                                         "cannot tell the two groups apart.")
    row.update(n_seeds_b=1, ci_low=0.01)
    assert difference_sentence(row).endswith("over images only; training variance not measured): baseline is higher.")


def test_accuracy_sentences_name_chance_where_it_belongs():
    row = _row(metric="accuracy", mean=0.02, std=0.01, ci_low=0.01, ci_high=0.04, verdict="below_chance")
    assert group_sentence(row, chance=0.1).endswith(
        ": below chance (10.0%): the model is systematically wrong on these images; 3 of 3 seeds alone reach this verdict.")
    row.update(mean=0.9, ci_low=0.85, ci_high=0.95, verdict="above_chance")
    assert group_sentence(row).endswith(": above chance; 3 of 3 seeds alone reach this verdict.")
