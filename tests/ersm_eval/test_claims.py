"""The paper's claims are judged from hand-made tables with known answers."""

import numpy as np
import pandas as pd

from ersm_eval.claims import evaluate_claims


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


def _deletion(energy_auc, random_auc, gap, gap_low):
    return pd.DataFrame([
        {"ranking": "energy", "auc": energy_auc, "max_gap_to_random": gap, "max_gap_k": 10,
         "max_gap_ci_low": gap_low, "max_gap_ci_high": gap + 0.05},
        {"ranking": "random", "auc": random_auc, "max_gap_to_random": np.nan, "max_gap_k": np.nan,
         "max_gap_ci_low": np.nan, "max_gap_ci_high": np.nan},
    ])


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
    assert v["Energy-guided deletion stays above random"] == "no"
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
