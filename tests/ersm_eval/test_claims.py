"""The paper's claims are judged from hand-made tables with known answers."""

import numpy as np
import pandas as pd

from ersm_eval.claims import ENERGY_CLAIM, evaluate_claims


def _per_image(correct, n_classes=2):
    return pd.DataFrame({"index": np.arange(len(correct)), "label": np.arange(len(correct)) % n_classes,
                         "correct": correct})


def _sparsity(mean_keep, below, mass, area):
    rows = [("keep", "mean_keep", mean_keep, mean_keep - 0.01, mean_keep + 0.01),
            ("keep", "frac_below_half", below, np.nan, np.nan),
            ("keep", "mass_in_object", mass, mass - 0.02, mass + 0.02),
            ("", "object_area_fraction", area, np.nan, np.nan)]
    return pd.DataFrame([{"checkpoint": "e", "map": m, "metric": k, "threshold": np.nan, "value": v,
                          "ci_low": lo, "ci_high": hi} for m, k, v, lo, hi in rows])


def _deletion(energy_auc, random_auc, gap, gap_low, verdict=None, half_width=0.02):
    diff = energy_auc - random_auc  # LeRF vs random; MoRF at random's area, so the gain is the same number
    low, high = diff - half_width, diff + half_width
    if verdict is None:
        verdict = "supports" if low > 0 else "contradicts" if high < 0 else "indistinguishable"
    return pd.DataFrame([
        {"ranking": "energy", "n_images": 200, "auc_lerf": energy_auc, "auc_morf": random_auc, "sg": diff,
         "sg_ci_low": low, "sg_ci_high": high, "sg_p_value": 0.01, "auc_diff_lerf": diff,
         "auc_diff_lerf_ci_low": low, "auc_diff_lerf_ci_high": high,
         "auc_diff_lerf_p_value": 0.01, "max_gap_to_random": gap, "max_gap_k": 10,
         "max_gap_ci_low": gap_low, "max_gap_ci_high": gap + 0.05, "min_gap_to_random": min(gap, diff) - 0.1,
         "min_gap_k": 40, "min_gap_ci_low": min(gap, diff) - 0.15, "min_gap_ci_high": min(gap, diff) - 0.05,
         "steps_above_random": 3, "steps_below_random": 20, "n_steps": 63, "verdict": verdict},
        {"ranking": "random", "auc_lerf": random_auc, "auc_morf": random_auc, "sg": 0.0, "auc_diff_lerf": np.nan, "max_gap_to_random": np.nan, "max_gap_k": np.nan,
         "max_gap_ci_low": np.nan, "max_gap_ci_high": np.nan, "verdict": ""},
    ])


def _deletion_claim(table):
    claims = evaluate_claims({}, {"deletion_summary.csv": table}, None, "b", "e")
    return next(c for c in claims if c["claim"] == ENERGY_CLAIM)


def _verdicts(claims):
    return {c["claim"]: c["supported"] for c in claims}


def test_all_supported():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(int)
    ersm = np.where(rng.random(400) < 0.6, 1, base)  # strictly better on many images
    occ = pd.DataFrame([{"checkpoint": "e", "fill": "gray", "pattern": p, "diff_auc_to_first": 0.05,
                         "diff_ci_low": 0.02, "diff_ci_high": 0.08} for p in ("grid", "center")])
    v = _verdicts(evaluate_claims(
        {"per_image.csv": _per_image(base)},
        {"per_image.csv": _per_image(ersm), "sparsity_summary.csv": _sparsity(0.6, 0.3, 0.5, 0.15),
         "deletion_summary.csv": _deletion(0.7, 0.5, 0.12, 0.05)},
        occ, "b", "e", init_keep=0.9, spurious=0.9))
    assert set(v.values()) == {"yes"}, v


def test_none_supported_and_not_measured():
    correct = np.ones(200, dtype=int)
    worse = correct.copy()
    worse[:60] = 0  # 30 points worse
    occ = pd.DataFrame([{"checkpoint": "e", "fill": "gray", "pattern": "grid", "diff_auc_to_first": -0.05,
                         "diff_ci_low": -0.08, "diff_ci_high": -0.02}])
    v = _verdicts(evaluate_claims(
        {"per_image.csv": _per_image(correct)},
        {"per_image.csv": _per_image(worse), "sparsity_summary.csv": _sparsity(0.91, 0.0, 0.15, 0.15),
         "deletion_summary.csv": _deletion(0.4, 0.5, -0.01, -0.03)},
        occ, "b", "e", init_keep=0.9, spurious=0.0))
    assert v["Accuracy is kept"] == "no"
    assert v["Emergent sparsity"] == "no"
    assert v[ENERGY_CLAIM] == "no"
    assert v["Robust to structured occlusion"] == "no"
    assert v["Masks lie on the object"] == "no"
    assert v["Ignores a spurious training background"] == "not measured"


def test_missing_tables_are_not_measured():
    v = _verdicts(evaluate_claims({}, {}, None))
    assert set(v.values()) == {"not measured"} and len(v) == 6


def test_models_at_chance_say_nothing_about_kept_accuracy():
    rng = np.random.default_rng(1)
    guess = (rng.random(500) < 0.1).astype(int)  # 10 classes, ~10% correct
    v = _verdicts(evaluate_claims({"per_image.csv": _per_image(guess, 10)}, {"per_image.csv": _per_image(guess, 10)},
                                  None, "b", "e", spurious=0.9))
    assert v["Accuracy is kept"] == "not measured"
    assert v["Ignores a spurious training background"] == "no"


def test_deletion_claim_follows_the_auc_difference_not_the_largest_gap():
    # the energy curve lies far below random (AUC 0.309 vs 0.522) but one step is 1.8 points above it
    claim = _deletion_claim(_deletion(0.309, 0.522, gap=0.018, gap_low=0.004))
    assert claim["supported"] == "no"
    assert ": contradicts (symmetric gain -0.213" in claim["evidence"]
    assert "(LeRF) loses accuracy faster than deleting in a random order (ΔAUC -0.213" in claim["evidence"]
    assert claim["evidence"].index("symmetric gain") < claim["evidence"].index("+1.8 points")  # the gap is secondary


def test_deletion_claim_indistinguishable_and_touching_zero_are_not_support():
    assert _deletion_claim(_deletion(0.51, 0.50, 0.05, 0.01))["supported"] == "no"  # interval -0.01..+0.03
    touching = _deletion(0.52, 0.50, 0.05, 0.01, half_width=0.02)  # interval exactly 0.00..+0.04
    touching.loc[0, ["sg_ci_low", "verdict"]] = [0.0, np.nan]  # no verdict column value: the rule here
    assert _deletion_claim(touching)["supported"] == "no"
    assert _deletion_claim(_deletion(0.60, 0.50, 0.05, 0.01))["supported"] == "yes"


def test_deletion_claim_at_chance_is_not_measured():
    claim = _deletion_claim(_deletion(0.7, 0.5, 0.2, 0.1, verdict="not_testable"))
    assert claim["supported"] == "not measured" and "at chance" in claim["evidence"]


def test_old_deletion_tables_without_auc_difference_are_not_measured():
    old = _deletion(0.7, 0.5, 0.2, 0.1).drop(columns=["sg", "sg_ci_low", "sg_ci_high", "verdict"])
    assert _deletion_claim(old)["supported"] == "not measured"


def test_chance_uses_the_wilson_interval_of_each_model():
    # 10 classes; 80 of 500 right (16%, Wilson interval 13.0%..19.5%, above chance) vs 50 of 500 (10%, at chance)
    above = np.zeros(500, dtype=int)
    above[:80] = 1
    guess = np.zeros(500, dtype=int)
    guess[:50] = 1
    v = _verdicts(evaluate_claims({"per_image.csv": _per_image(guess, 10)}, {"per_image.csv": _per_image(above, 10)},
                                  None, "b", "e"))
    assert v["Accuracy is kept"] == "yes"  # only one model at chance: the comparison means something
    v = _verdicts(evaluate_claims({"per_image.csv": _per_image(guess, 10)}, {"per_image.csv": _per_image(guess, 10)},
                                  None, "b", "e", n_classes=10))
    assert v["Accuracy is kept"] == "not measured"


def test_masks_claim_uses_the_localization_verdict():
    loc = pd.DataFrame([
        {"checkpoint": "e", "map": "keep", "metric": "mass_in_object", "value": 0.40, "ci_low": 0.35, "ci_high": 0.45,
         "excess": 0.05, "excess_ci_low": -0.01, "excess_ci_high": 0.11, "verdict": "does_not_localize"},
        {"checkpoint": "e", "map": "uniform", "metric": "mass_in_object", "value": 0.35, "ci_low": 0.3, "ci_high": 0.4,
         "excess": np.nan, "excess_ci_low": np.nan, "excess_ci_high": np.nan, "verdict": "baseline"},
    ])
    claims = {c["claim"]: c for c in evaluate_claims({}, {"localization.csv": loc}, None, "b", "e")}
    assert claims["Masks lie on the object"]["supported"] == "partly"
    assert "does not localize" in claims["Masks lie on the object"]["evidence"]
    loc.loc[0, ["excess_ci_low", "verdict"]] = [0.01, "localizes"]
    claims = {c["claim"]: c for c in evaluate_claims({}, {"localization.csv": loc}, None, "b", "e")}
    assert claims["Masks lie on the object"]["supported"] == "yes"
