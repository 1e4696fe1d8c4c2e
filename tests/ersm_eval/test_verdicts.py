"""The verdict rules and their sentences, on hand-made numbers and rows."""

import math

import numpy as np
import pandas as pd
import pytest

from ersm_eval.verdicts import (
    DELETION_VERDICTS,
    RANDOM_VERDICTS, LOCALIZATION_VERDICTS, ChanceTest, boxes_uninformative, chance_sentence, chance_test,
    deletion_sentence, deletion_verdict, follows_position, localization_sentence, localization_verdict,
    position_sentence, step_counts, uninformative_boxes_sentence,
)

NAN = float("nan")


# -- chance -----------------------------------------------------------------------------


def test_chance_test_by_hand():
    # Wilson 95% for 10 of 100: centre (0.1 + z²/200) / (1 + z²/100), half z·sqrt(0.0009 + z²/40000) / (1 + z²/100)
    z = 1.959963984540054
    denom = 1 + z * z / 100
    centre = (0.1 + z * z / 200) / denom
    half = z * math.sqrt(0.1 * 0.9 / 100 + z * z / 40000) / denom
    test = chance_test(10, 100, 12)
    assert test.accuracy == 0.1 and test.chance == pytest.approx(1 / 12)
    assert test.ci_low == pytest.approx(centre - half) and test.ci_high == pytest.approx(centre + half)
    assert test.n_images == 100 and test.n_classes == 12
    assert test.at_chance  # 0.055 <= 0.083 <= 0.174
    assert test.as_dict()["at_chance"] is True


def test_chance_test_above_and_below_chance():
    assert not chance_test(60, 100, 12).at_chance
    below = chance_test(0, 200, 2)  # always wrong on two classes: systematically below chance
    assert not below.at_chance and below.ci_high < 0.5
    assert "below chance" in chance_sentence(below, "m")


def test_chance_interval_exactly_at_chance_is_at_chance():
    assert ChanceTest(0.3, 0.25, 0.5, 0.5, 10, 2).at_chance  # touching the high end
    assert ChanceTest(0.6, 0.5, 0.7, 0.5, 10, 2).at_chance  # touching the low end
    assert not ChanceTest(0.6, 0.50001, 0.7, 0.5, 10, 2).at_chance


def test_no_images_is_at_chance_and_bad_counts_raise():
    assert chance_test(0, 0, 10).at_chance  # no interval: nothing can be concluded
    with pytest.raises(ValueError, match="n_correct"):
        chance_test(5, 4, 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        chance_test(1, 4, 1)


def test_chance_sentence_says_chance_first():
    text = chance_sentence(chance_test(10, 100, 12), "ersm")
    assert text.startswith("ersm: accuracy before any deletion is 10.0% on 100 images")
    assert "chance (8.3%, 1 of 12 classes)" in text and "at chance" in text and "no ranking can be judged" in text
    assert "can be compared" in chance_sentence(chance_test(60, 100, 12), "ersm")


# -- deletion ---------------------------------------------------------------------------


@pytest.mark.parametrize("low,high,at_chance,expected", [
    (0.01, 0.05, False, "above_random"),
    (-0.05, -0.01, False, "below_random"),
    (-0.01, 0.05, False, "indistinguishable"),
    (0.0, 0.05, False, "indistinguishable"),  # touching 0 is not above
    (-0.05, 0.0, False, "indistinguishable"),  # nor below
    (0.0, 0.0, False, "indistinguishable"),  # equal curves: a tie
    (NAN, NAN, False, "indistinguishable"),
    (NAN, -0.01, False, "below_random"),
    (None, None, False, "indistinguishable"),
    (0.01, 0.05, True, "not_testable"),  # chance overrides everything
    (-0.05, -0.01, True, "not_testable"),
])
def test_deletion_verdict(low, high, at_chance, expected):
    assert deletion_verdict(low, high, at_chance) == expected
    assert expected in RANDOM_VERDICTS


def test_step_counts_never_count_ties():
    low = np.array([0.0, 0.01, -0.02, -0.1, 0.0, NAN, 0.2])
    high = np.array([0.0, 0.05, 0.02, -0.01, 0.1, NAN, 0.3])
    # k=0: equal accuracies on every image ([0, 0]) is a tie; [0, 0.1] touches 0: not a win; NaN: neither
    assert step_counts(low, high) == (2, 1, 7)
    assert step_counts([0.0] * 5, [0.0] * 5) == (0, 0, 5)
    with pytest.raises(ValueError, match="differ in length"):
        step_counts([0.1], [0.2, 0.3])


def _row(**kw):
    row = {"ranking": "energy", "n_images": 100, "sg": -0.15, "sg_ci_low": -0.2, "sg_ci_high": -0.1,
           "sg_p_value": 0.0005, "auc_diff_lerf": -0.213, "auc_diff_lerf_ci_low": -0.25,
           "auc_diff_lerf_ci_high": -0.18, "auc_diff_lerf_p_value": 0.0005, "auc_diff_morf": 0.01,
           "auc_diff_morf_ci_low": -0.02, "auc_diff_morf_ci_high": 0.04, "auc_diff_morf_p_value": 0.4,
           "max_gap_to_random": 0.018, "max_gap_k": 3, "max_gap_ci_low": 0.004,
           "max_gap_ci_high": 0.03, "min_gap_to_random": -0.4, "min_gap_k": 30, "min_gap_ci_low": -0.45,
           "min_gap_ci_high": -0.35, "steps_above_random": 1, "steps_below_random": 57, "n_steps": 63,
           "verdict": "contradicts"}
    row.update(kw)
    return row


def test_negative_gain_with_a_positive_largest_gap_contradicts_and_names_each_order():
    text = deletion_sentence(_row(), chance_test(60, 100, 12), "ersm")
    assert text.startswith("ersm: energy: deleting what energy calls least important first (LeRF) loses accuracy "
                           "faster than deleting what it calls most important first (MoRF): contradicts "
                           "(symmetric gain -0.150 (95% CI -0.200 to -0.100, p < 0.001), 100 images)")
    assert ("deleting what energy calls least important first (LeRF) loses accuracy faster than deleting in a "
            "random order (ΔAUC -0.213 (95% CI -0.250 to -0.180, p < 0.001))") in text
    assert ("deleting what energy calls most important first (MoRF) cannot be told apart from deleting in a "
            "random order (ΔAUC +0.010") in text
    assert "(LeRF) is significantly more accurate than random deletion at 1 of 63 steps and less accurate at 57" in text
    # the largest gap is secondary, beside the smallest, each with its k and interval
    assert "from -40.0 points at k=30 (95% CI -45.0 to -35.0) to +1.8 points at k=3 (95% CI +0.4 to +3.0)" in text
    assert text.index("symmetric gain") < text.index("ΔAUC") < text.index("+1.8 points")
    assert "above random" not in text and "below random" not in text


def test_deletion_sentence_at_chance_says_not_testable_whatever_the_row():
    text = deletion_sentence(_row(verdict="supports"), chance_test(10, 100, 12), "")
    assert text == ("energy: deleting in either order cannot be judged, the model is at chance before any "
                    "deletion: not_testable.")


def test_deletion_sentence_without_a_verdict_applies_the_rule_and_handles_nan():
    row = _row(verdict=None, sg=0.02, sg_ci_low=NAN, sg_ci_high=NAN, sg_p_value=NAN, auc_diff_lerf=NAN,
               auc_diff_morf=NAN, max_gap_to_random=NAN, steps_above_random=pd.NA)
    text = deletion_sentence(row, None, "m")
    assert "cannot be told apart from deleting what it calls most important first (MoRF)" in text
    assert "no interval" in text and ": indistinguishable" in text
    assert "steps" not in text and "per-step gap" not in text and "ΔAUC" not in text
    assert deletion_sentence({"ranking": "random"}, None, "m").startswith(
        "m: random is the reference the other rankings are compared with")


# -- localization, boxes, position -------------------------------------------------------


def test_localization_verdict():
    assert localization_verdict(0.01) == "localizes"
    assert localization_verdict(0.0) == "does_not_localize"  # touching 0
    assert localization_verdict(-0.1) == "does_not_localize"
    assert localization_verdict(NAN) == "does_not_localize"
    assert localization_verdict(0.5, is_baseline=True) == "baseline"  # a baseline never localizes
    assert set(LOCALIZATION_VERDICTS) == {"localizes", "does_not_localize", "baseline"}


def test_localization_sentences():
    row = {"map": "keep", "metric": "mass_in_object", "value": 0.4, "ci_low": 0.3, "ci_high": 0.5,
           "excess": 0.1, "excess_ci_low": 0.05, "excess_ci_high": 0.15, "verdict": "localizes"}
    assert localization_sentence(row) == (
        "keep map, mass_in_object: 0.400 (95% CI 0.300 to 0.500); excess over the better baseline +0.100 "
        "(95% CI +0.050 to +0.150): it localizes the object.")
    assert "does not localize" in localization_sentence({**row, "verdict": None, "excess_ci_low": 0.0})
    baseline = localization_sentence({**row, "map": "uniform", "verdict": "baseline"})
    assert baseline.startswith("uniform map") and "trivial baseline" in baseline and "localizes" not in baseline


def test_boxes_uninformative_needs_more_than_half():
    assert boxes_uninformative([0.9, 0.8, 0.95, 0.1])  # 3 of 4 at >= 0.8
    assert not boxes_uninformative([0.9, 0.8, 0.1, 0.2])  # exactly half is not more than half
    assert not boxes_uninformative([0.79, 0.79, 0.79])
    assert not boxes_uninformative([])
    assert boxes_uninformative([0.85, NAN, 0.9, 0.2])  # NaN (no box) left out: 2 of 3
    assert "80%" in uninformative_boxes_sentence(0.9) and "90.0%" in uninformative_boxes_sentence(0.9)


def test_follows_position():
    assert follows_position(0.5, 0.0)  # exactly the threshold
    assert follows_position(0.1, -0.7)  # either correlation, either sign
    assert not follows_position(0.49, -0.49)
    assert not follows_position(NAN, NAN)
    assert follows_position(NAN, 0.8)
    warn = position_sentence(0.72, 0.65, 0.97)
    assert warn.startswith("Warning: the energy ranking follows position")
    assert "+0.72" in warn and "+0.65" in warn and "97.0%" in warn
    assert position_sentence(0.1, 0.2, NAN).startswith("The energy ranking does not follow position")


def test_accuracy_sentence_names_the_shift_and_chance():
    from ersm_eval.verdicts import accuracy_sentence

    test = chance_test(270, 300, 6)  # 90% of 300 images, 6 classes
    text = accuracy_sentence(test, "ersm", 0.5)
    assert text.startswith("ersm: test accuracy of the model as trained is 90.0% on 300 images")
    assert "chance 16.7%" in text and "probability 0.5" in text and "independent of the class" in text
    assert "at chance" not in text
    plain = accuracy_sentence(test, "ersm", None)
    assert "background" not in plain and plain.endswith(").")
    guessing = accuracy_sentence(chance_test(52, 300, 6), "base", 0.5)  # 17.3%, interval holds 1/6
    assert guessing.endswith("the model is at chance, so none of its results is a finding.")
