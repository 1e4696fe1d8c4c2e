"""The report rendering rules of ersm_eval.verdicts: one number format, verdict words, glance summaries."""

from __future__ import annotations

import math

import pytest

from ersm_eval import verdicts


@pytest.mark.parametrize("value, style, digits, want", [
    (0.12345, "plain", None, "0.123"),
    (-0.12345, "signed", None, "-0.123"),
    (0.0004, "signed", None, "+0.000"),
    (-0.0004, "signed", None, "+0.000"),  # no negative zero
    (-0.0004, "plain", None, "0.000"),
    (0.1234, "percent", None, "12.3%"),
    (0.1234, "percent", 0, "12%"),
    (-0.0234, "points", None, "-2.3"),
    (0.5, "points", None, "+50.0"),
    (15.0, "count", None, "15"),
    (0.98765, "plain", 2, "0.99"),
    (math.nan, "plain", None, "n/a"),
    (None, "percent", None, "n/a"),
    ("", "count", None, "n/a"),
    (math.inf, "signed", None, "n/a"),
])
def test_format_number_by_hand(value, style, digits, want):
    assert verdicts.format_number(value, style, digits) == want


def test_format_number_refuses_an_unknown_style():
    with pytest.raises(ValueError, match="number style must be one of plain, signed, percent, points, count"):
        verdicts.format_number(1.0, "fancy")


def test_intervals_and_estimates():
    assert verdicts.format_interval(-0.2, 0.1) == "95% CI -0.200 to +0.100"
    assert verdicts.format_interval(0.1, 0.25, "percent") == "95% CI 10.0% to 25.0%"
    assert verdicts.format_interval(math.nan, 0.1) == "no interval"
    assert verdicts.format_estimate(0.5, 0.4, 0.6) == "0.500 (95% CI 0.400 to 0.600)"
    assert verdicts.format_estimate(0.05, 0.01, 0.09, "signed") == "+0.050 (95% CI +0.010 to +0.090)"
    assert verdicts.format_estimate(0.5) == "0.500"  # no interval: the value alone
    assert verdicts.format_estimate(math.nan, 0.1, 0.2) == "n/a"


def test_the_sentences_use_the_same_format():
    # the console's sentences and the report's cells print a number the same way
    row = {"ranking": "energy", "verdict": "supports", "sg": 0.05, "sg_ci_low": 0.01, "sg_ci_high": 0.09}
    sentence = verdicts.deletion_sentence(row, None, "")
    assert verdicts.format_estimate(0.05, 0.01, 0.09, "signed").replace(")", "") in sentence


def test_verdict_words():
    assert verdicts.verdict_words("supports") == "supports (least important first outlasts most important first)"
    assert verdicts.verdict_words("contradicts") == "contradicts (most important first outlasts least important first)"
    assert verdicts.verdict_words("indistinguishable") == "indistinguishable (the two orders cannot be told apart)"
    assert verdicts.verdict_words("above_random") == verdicts.NOT_MEASURED  # no bare "above random" any more
    assert verdicts.verdict_words("not_testable") == "not testable (model at chance)"
    assert verdicts.verdict_words("does_not_localize") == "does not localize"
    for empty in ("", None, math.nan, "made_up"):
        assert verdicts.verdict_words(empty) == verdicts.NOT_MEASURED
    names = verdicts.verdict_names()
    assert set(verdicts.DELETION_VERDICTS) | set(verdicts.LOCALIZATION_VERDICTS) <= set(names)
    assert "supports" in names and "localizes" in names and "above random" not in names


def test_chance_words_by_hand():
    # 10 of 100 right with 5 classes: Wilson interval about [0.055, 0.174], below chance 0.2
    assert verdicts.chance_words(verdicts.chance_test(10, 100, 5)) == "below chance"
    assert verdicts.chance_words(verdicts.chance_test(20, 100, 5)) == verdicts.AT_CHANCE == "at chance"
    assert verdicts.chance_words(verdicts.chance_test(80, 100, 5)) == "above chance"
    assert verdicts.chance_words(verdicts.chance_test(0, 0, 5)) == "at chance"  # no images: nothing can be told
    assert verdicts.chance_words(None) == verdicts.NOT_MEASURED


def test_chance_test_from_record_round_trips():
    test = verdicts.chance_test(30, 40, 4)
    assert verdicts.chance_test_from_record(test.as_dict()) == test
    assert verdicts.chance_test_from_record(None) is None
    with pytest.raises(ValueError, match="the recorded chance test is malformed"):
        verdicts.chance_test_from_record({"accuracy": 0.5})
    with pytest.raises(ValueError, match="malformed"):
        verdicts.chance_test_from_record(dict(test.as_dict(), n_images="many"))


def test_localization_summary_by_hand():
    assert verdicts.localization_summary(["localizes", "localizes", "does_not_localize"]) == "localizes on 2 of 3 metrics"
    assert verdicts.localization_summary(["localizes", "localizes"]) == "localizes on every one of 2 metrics"
    assert verdicts.localization_summary(["localizes"]) == "localizes on 1 of 1 metric"
    assert verdicts.localization_summary(["does_not_localize"] * 4) == "does not localize on any of 4 metrics"
    # baseline rows and empty cells count for nothing
    assert verdicts.localization_summary(["baseline", "", "localizes", "does_not_localize"]) == "localizes on 1 of 2 metrics"
    assert verdicts.localization_summary(["baseline", ""]) == verdicts.NOT_MEASURED
    assert verdicts.localization_summary([]) == verdicts.NOT_MEASURED


def test_zero_words():
    assert verdicts.zero_words(0.01, 0.2) == "excludes zero"
    assert verdicts.zero_words(-0.3, -0.1) == "excludes zero"
    assert verdicts.zero_words(-0.1, 0.1) == "includes zero"
    assert verdicts.zero_words(0.0, 0.1) == "includes zero"  # touching zero is not excluding it
    assert verdicts.zero_words(math.nan, 0.1) == "no interval"
