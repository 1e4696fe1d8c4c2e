"""The insertion rule and its sentences on hand-made tables, and insertion tables from hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ersm_eval import verdicts
from ersm_eval.deletion import DeletionSettings
from ersm_eval.deletion.insertion import insertion_tables
from ersm_eval.verdicts.insertion import (insertion_sentence, insertion_verdict, insertion_verdict_words,
                                          insertion_verdicts, insertion_words)


@pytest.mark.parametrize("low, high, at_chance, expected", [
    (0.01, 0.2, False, "supports"),
    (-0.3, -0.05, False, "contradicts"),
    (0.0, 0.2, False, "indistinguishable"),  # touching 0: cannot tell
    (-0.1, 0.1, False, "indistinguishable"),
    (-0.1, 0.0, False, "indistinguishable"),
    (float("nan"), float("nan"), False, "indistinguishable"),  # no interval
    (None, None, False, "indistinguishable"),
    (0.01, 0.2, True, "not_testable"),
])
def test_the_rule(low, high, at_chance, expected):
    assert insertion_verdict(low, high, at_chance) == expected
    assert expected in verdicts.INSERTION_VERDICTS


def _row(ranking="energy", diff=0.12, low=0.05, high=0.2, p=0.002, n=40, verdict=""):
    return {"ranking": ranking, "order": "morf", "n_images": n, "auc": 0.7, "auc_diff": diff,
            "auc_diff_ci_low": low, "auc_diff_ci_high": high, "auc_diff_p_value": p, "verdict": verdict}


def test_sentences_name_the_order_and_carry_the_numbers():
    assert insertion_sentence(_row(), False) == (
        "energy: inserting what energy calls most important first (MoRF) recovers accuracy faster than inserting "
        "in random order: supports (ΔAUC +0.120 (95% CI +0.050 to +0.200, p = 0.002), 40 images).")
    worse = insertion_sentence(_row(diff=-0.2, low=-0.3, high=-0.1, p=0.0001), False, label="m")
    assert worse.startswith("m: energy: inserting what energy calls most important first (MoRF) recovers accuracy "
                            "more slowly than inserting in random order: contradicts (ΔAUC -0.200")
    assert "p < 0.001" in worse
    tie = insertion_sentence(_row(diff=0.01, low=-0.02, high=0.04), False)
    assert "cannot be told apart from inserting in random order: indistinguishable" in tie
    chance = insertion_sentence(_row(), True)
    assert chance.endswith("cannot be judged, the model is at chance before any deletion: not_testable.")
    assert "not_testable" in insertion_sentence(_row(verdict="not_testable"), False)
    alone = insertion_sentence(_row(diff=float("nan"), low=float("nan"), high=float("nan")), False)
    assert "indistinguishable (no random insertion to compare with)" in alone
    assert "reference" in insertion_sentence({"ranking": "random", "auc": 0.5}, False)
    assert insertion_words("cam") == "inserting what cam calls most important first (MoRF)"
    assert insertion_words("x", "random") == "inserting tokens in random order"
    with pytest.raises(ValueError, match="MoRF"):
        insertion_words("cam", "lerf")


def test_display_words_are_the_verdict_vocabulary():
    assert insertion_verdict_words("supports").startswith("supports (most important first recovers")
    assert insertion_verdict_words("") == verdicts.NOT_MEASURED and insertion_verdict_words(None) == verdicts.NOT_MEASURED
    assert insertion_verdict_words("supports") in verdicts.verdict_names()


def test_run_verdicts_from_tables_use_deletions_chance_test():
    curves = pd.DataFrame({"k": [0, 5], "n_images": [40, 40], "accuracy": [0.9, 0.5]})
    summary = pd.DataFrame([_row(), _row("cam", 0.0, -0.1, 0.1), {"ranking": "random", "auc": 0.5}])
    found = insertion_verdicts({"deletion_curves.csv": curves, "insertion_summary.csv": summary}, 10, "m")
    assert found["verdicts"] == {"energy": "supports", "cam": "indistinguishable"}
    assert set(found["sentences"]) == {"energy", "cam", "random"}
    at_chance = pd.DataFrame({"k": [0], "n_images": [40], "accuracy": [0.5]})
    found = insertion_verdicts({"deletion_curves.csv": at_chance, "insertion_summary.csv": summary}, 2)
    assert found["verdicts"] == {"energy": "not_testable", "cam": "not_testable"}


def _records(ins_correct, ins_prob=None, deletion_k0=None):
    """Records of n images with insertion curves (energy MoRF, random seed 0, random seed 1) on k = 0, 8, 16 of
    N = 16; deletion's correctness at k = 0 says whether the model is above chance."""
    ins_correct = np.asarray(ins_correct, dtype=bool)
    n = len(ins_correct)
    k0 = np.ones(n, dtype=bool) if deletion_k0 is None else np.asarray(deletion_k0, dtype=bool)
    return {
        "index": np.arange(n)[::-1].copy(),  # any order: the tables sort by index
        "correct": np.repeat(k0[:, None, None], 3, axis=2)[::-1].copy(),
        "insertion_correct": ins_correct[::-1].copy(),
        "insertion_true_prob": (ins_correct if ins_prob is None else np.asarray(ins_prob))[::-1].astype(np.float32),
    }


CURVES = [("energy", "morf", -1), ("random", "random", 0), ("random", "random", 1)]
STEPS = np.array([0, 8, 16])


def test_tables_by_hand_on_three_images():
    # steps at fraction 0, ½, 1: area = (y0/2 + y1 + y2/2) / 2
    ins = [
        [[0, 1, 1], [0, 0, 1], [0, 1, 1]],  # energy 0.75; random seed mean (0, .5, 1) → 0.5
        [[0, 1, 1], [0, 0, 0], [0, 0, 1]],  # energy 0.75; random (0, 0, .5) → 0.125
        [[1, 1, 1], [1, 1, 1], [1, 1, 1]],  # energy 1; random 1
    ]
    st = DeletionSettings(label="m", n_boot=200)
    tables = insertion_tables(_records(ins), CURVES, ["energy", "random"], STEPS, 16, 10, st)
    curves = tables["insertion_curves.csv"]
    assert len(curves) == 3 * 3 and curves.fraction_inserted.tolist()[:3] == [0.0, 0.5, 1.0]
    energy = curves[curves.ranking == "energy"]
    assert energy.accuracy.tolist() == pytest.approx([1 / 3, 1.0, 1.0])
    summary = tables["insertion_summary.csv"].set_index("ranking")
    assert summary.loc["energy", "auc"] == pytest.approx((0.75 + 0.75 + 1) / 3)
    assert summary.loc["random", "auc"] == pytest.approx((0.5 + 0.125 + 1) / 3)
    assert summary.loc["energy", "auc_diff"] == pytest.approx((0.25 + 0.625 + 0) / 3)
    assert summary.loc["energy", "acc_k0"] == pytest.approx(1 / 3)
    assert summary.loc["random", "n_seeds"] == 2 and summary.loc["energy", "n_seeds"] == 1
    # image 3 has a difference of 0, the others positive: the interval's low end is 0, which cannot tell
    assert summary.loc["energy", "auc_diff_ci_low"] >= 0
    expected = insertion_verdict(summary.loc["energy", "auc_diff_ci_low"], summary.loc["energy", "auc_diff_ci_high"], False)
    assert summary.loc["energy", "verdict"] == expected
    # probability areas use the same rule on the probabilities
    assert summary.loc["energy", "prob_auc"] == pytest.approx(summary.loc["energy", "auc"])


def test_tables_say_cannot_tell_and_not_testable():
    same = [[[0, 1, 1], [0, 1, 1], [0, 1, 1]]] * 4  # energy equals random on every image
    st = DeletionSettings(n_boot=100)
    summary = insertion_tables(_records(same), CURVES, ["energy", "random"], STEPS, 16, 10, st)["insertion_summary.csv"]
    row = summary.set_index("ranking").loc["energy"]
    assert row.auc_diff == 0 and row.auc_diff_ci_low == 0 and row.verdict == "indistinguishable"
    better = [[[0, 1, 1], [0, 0, 1], [0, 0, 1]]] * 30
    above = insertion_tables(_records(better), CURVES, ["energy", "random"], STEPS, 16, 10, st)
    assert above["insertion_summary.csv"].set_index("ranking").loc["energy", "verdict"] == "supports"
    at_chance = insertion_tables(_records(better, deletion_k0=[i % 2 for i in range(30)]), CURVES,
                                 ["energy", "random"], STEPS, 16, 2, st)
    assert at_chance["insertion_summary.csv"].set_index("ranking").loc["energy", "verdict"] == "not_testable"


def test_tables_refuse_records_without_insertion():
    records = _records([[[0, 1, 1], [0, 1, 1], [0, 1, 1]]])
    del records["insertion_correct"]
    with pytest.raises(ValueError, match="evaluate with insertion=True"):
        insertion_tables(records, CURVES, ["energy", "random"], STEPS, 16, 10, DeletionSettings())
