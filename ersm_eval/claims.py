"""The paper's claims, checked against a run's tables (ERSM model vs a baseline).

Each claim gets a verdict ``"yes"``, ``"no"``, ``"partly"`` or ``"not measured"``
and the numbers behind it. The rules are fixed here, stated in each evidence
string, and conservative: a claim is "yes" only when a 95% interval supports it.

1. Accuracy is kept: paired difference ERSM − baseline on the same test images,
   non-inferiority margin 3 points (interval's lower end ≥ −3 points); "not
   measured" when both models are at chance (the chance test of
   :mod:`ersm_eval.verdicts`: the accuracy's Wilson 95% interval contains
   1 / number of classes).
2. Emergent sparsity: mean keep probability at least 5 points below the layer's
   initial keep (``init_keep``), or ≥ 10% of tokens with π < 0.5.
3. Energy ranking, both orders: the energy ranking's deletion verdict (from the
   paired interval of its symmetric gain, the area deleting what energy calls least
   important first (LeRF) minus the area deleting what it calls most important first
   (MoRF)) is ``supports``; ``contradicts`` or ``indistinguishable`` is "no",
   ``not_testable`` (the model at chance) is "not measured". The largest per-step gap
   is never the criterion.
4. Robustness to occlusion: the ERSM model's occlusion AUC minus the baseline's,
   per fill and pattern, paired over images: "yes" if no condition is significantly
   worse and most are significantly better; "partly" if some are better and none worse.
5. Masks on the object: with localization.csv, the keep map's localization verdict
   for the keep mass on the object (its excess over the better of the uniform and
   centre maps, interval above 0); without it, keep mass inside the object against
   the object's share of the image (what a uniform map gets), interval above it.
6. Ignoring a spurious training background: with a class-correlated training
   background and an independent test background, ERSM's test accuracy exceeds
   the baseline's (paired interval above 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ersm_eval.stats import paired_bootstrap_diff
from ersm_eval.verdicts import ChanceTest, chance_test, deletion_sentence, localization_sentence, order_verdict

__all__ = ["ENERGY_CLAIM", "evaluate_claims"]

ENERGY_CLAIM = "Energy ranking: deleting its least important tokens first outlasts deleting its most important first"

Tables = dict[str, pd.DataFrame]


def _stat(summary: pd.DataFrame | None, map_name: str, metric: str) -> pd.Series | None:
    if summary is None:
        return None
    rows = summary[(summary["map"].fillna("") == map_name) & (summary["metric"] == metric)]
    if "threshold" in rows:
        rows = rows[rows["threshold"].isna()] if rows["threshold"].isna().any() else rows
    return None if rows.empty else rows.iloc[0]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _chance_test(per_image: pd.DataFrame, n_classes: int | None) -> ChanceTest | None:
    """The chance test of a model's per_image.csv; classes: ``n_classes``, else those seen among the labels."""
    n = n_classes or (per_image["label"].nunique() if "label" in per_image else 0)
    if n < 2 or per_image.empty:
        return None
    correct = per_image["correct"].astype(float)
    return chance_test(int(correct.sum()), len(correct), int(n))


def _paired_accuracy(base: pd.DataFrame, ersm: pd.DataFrame) -> tuple[float, float, float, float, float, int] | None:
    merged = base[["index", "correct"]].merge(ersm[["index", "correct"]], on="index", suffixes=("_b", "_e"))
    if merged.empty:
        return None
    e = merged["correct_e"].to_numpy(float)
    b = merged["correct_b"].to_numpy(float)
    diff, low, high, _ = paired_bootstrap_diff(e, b)
    return float(e.mean()), float(b.mean()), float(diff), float(low), float(high), len(merged)


def evaluate_claims(
    baseline: Tables,
    ersm: Tables,
    occlusion_summary: pd.DataFrame | None = None,
    baseline_label: str = "baseline",
    ersm_label: str = "ersm",
    init_keep: float = 0.9,
    spurious: float = 0.0,
    n_classes: int | None = None,
) -> list[dict[str, Any]]:
    """Verdicts for the paper's claims.

    Args:
        baseline: the baseline's tables by file name (per_image.csv, sparsity_summary.csv, ...).
        ersm: the ERSM model's tables by file name.
        occlusion_summary: occlusion_summary.csv of a run holding both checkpoints,
            the baseline first (its ``diff_auc_to_first`` is ERSM − baseline).
        init_keep: the ERSM layer's initial keep probability.
        spurious: the training split's background-label correlation (0 = none).
        n_classes: classes of the models (chance = 1 / n_classes); None: those seen among the labels.
    """
    claims: list[dict[str, Any]] = []

    def add(claim: str, verdict: str, evidence: str) -> None:
        claims.append({"claim": claim, "supported": verdict, "evidence": evidence})

    # 1. accuracy kept
    acc = None
    chance = 0.0
    at_chance = False
    if "per_image.csv" in baseline and "per_image.csv" in ersm:
        acc = _paired_accuracy(baseline["per_image.csv"], ersm["per_image.csv"])
        tests = [_chance_test(baseline["per_image.csv"], n_classes), _chance_test(ersm["per_image.csv"], n_classes)]
        if acc is not None and all(t is not None for t in tests):
            chance = tests[1].chance
            at_chance = all(t.at_chance for t in tests)  # neither model tells the classes apart
    if acc is None:
        add("Accuracy is kept", "not measured", "needs per_image.csv of both models on the same images")
    elif at_chance:
        add("Accuracy is kept", "not measured",
            f"both models are at chance on the test images (their accuracy's 95% interval contains chance; "
            f"{ersm_label} {100 * acc[0]:.1f}%, {baseline_label} {100 * acc[1]:.1f}%, chance {100 * chance:.1f}%): "
            "comparing them says nothing; train longer or on "
            "less biased data")
    else:
        e, b, d, lo, hi, n = acc
        add("Accuracy is kept", "yes" if lo >= -0.03 else "no",
            f"{ersm_label} {100 * e:.1f}% vs {baseline_label} {100 * b:.1f}% on {n} images; difference "
            f"{_pts(d)} points (95% CI {_pts(lo)} to {_pts(hi)}); kept means the interval's lower end ≥ −3 points")

    # 2. emergent sparsity
    spars = ersm.get("sparsity_summary.csv")
    mean_keep, below = _stat(spars, "keep", "mean_keep"), _stat(spars, "keep", "frac_below_half")
    if mean_keep is None:
        add("Emergent sparsity", "not measured", f"{ersm_label} has no keep map in sparsity_summary.csv")
    else:
        mk, fb = float(mean_keep["value"]), float(below["value"]) if below is not None else float("nan")
        ok = mk <= init_keep - 0.05 or (fb == fb and fb >= 0.10)
        add("Emergent sparsity", "yes" if ok else "no",
            f"mean keep probability {mk:.3f} (initial {init_keep:.2f}); {100 * fb:.1f}% of tokens with keep < 0.5; "
            "sparse means ≥ 5 points below the initial keep or ≥ 10% of tokens below 0.5")

    # 3. energy: least important first outlasts most important first
    dsum = ersm.get("deletion_summary.csv")
    energy = None if dsum is None else dsum[dsum["ranking"] == "energy"]
    if energy is None or energy.empty:
        add(ENERGY_CLAIM, "not measured", "needs the energy ranking in deletion_summary.csv")
    else:
        er = energy.iloc[0].to_dict()
        verdict = er.get("verdict")
        if "sg_ci_low" not in er:
            verdict = None
        elif not isinstance(verdict, str) or not verdict:  # tables without the column: the same rule, here
            verdict = order_verdict(er.get("sg_ci_low"), er.get("sg_ci_high"), False)
        if verdict is None:
            add(ENERGY_CLAIM, "not measured",
                "deletion_summary.csv has no symmetric gain (written by an older ersm-eval); re-run the deletion")
        else:
            er["verdict"] = verdict
            supported = {"supports": "yes", "not_testable": "not measured"}.get(verdict, "no")
            add(ENERGY_CLAIM, supported, deletion_sentence(er, None, ersm_label))

    # 4. occlusion robustness
    if occlusion_summary is None or occlusion_summary.empty:
        add("Robust to structured occlusion", "not measured", "needs occlusion_summary.csv with both models")
    else:
        rows = occlusion_summary[occlusion_summary["checkpoint"] == ersm_label].dropna(subset=["diff_ci_low"])
        if rows.empty:
            add("Robust to structured occlusion", "not measured", f"no paired occlusion rows for {ersm_label}")
        else:
            better = int((rows["diff_ci_low"] > 0).sum())
            worse = int((rows["diff_ci_high"] < 0).sum())
            n = len(rows)
            verdict = "yes" if worse == 0 and better > n / 2 else ("partly" if better > 0 and worse == 0 else "no")
            detail = "; ".join(
                f"{r.fill}/{r.pattern} {_pts(float(r.diff_auc_to_first))}" for r in rows.itertuples(index=False)
            )
            add("Robust to structured occlusion", verdict,
                f"occlusion AUC of {ersm_label} minus {baseline_label} (points): {detail}; "
                f"significantly better in {better} of {n} conditions, worse in {worse}")

    # 5. masks on the object
    mass = _stat(spars, "keep", "mass_in_object")
    area = _stat(spars, "", "object_area_fraction")
    loc = ersm.get("localization.csv")
    loc_row = None
    if loc is not None and not loc.empty:
        hit = loc[(loc["map"] == "keep") & (loc["metric"] == "mass_in_object")]
        loc_row = None if hit.empty else hit.iloc[0].to_dict()
    if loc_row is not None:
        localizes = loc_row.get("verdict") == "localizes"
        excess = float(loc_row.get("excess", float("nan")))
        add("Masks lie on the object", "yes" if localizes else ("partly" if excess > 0 else "no"),
            localization_sentence(loc_row))
    elif mass is None or area is None:
        add("Masks lie on the object", "not measured", "needs a keep map and object masks (sparsity on a dataset with masks)")
    else:
        m, a = float(mass["value"]), float(area["value"])
        low = float(mass["ci_low"]) if mass["ci_low"] == mass["ci_low"] else m
        add("Masks lie on the object", "yes" if low > a else ("partly" if m > a else "no"),
            f"keep mass inside the object {m:.3f} (95% CI {low:.3f}–{float(mass['ci_high']):.3f}) vs the object's "
            f"share of the image {a:.3f}, which a uniform map would get")

    # 6. spurious background
    if spurious <= 0:
        add("Ignores a spurious training background", "not measured", "the training data had no spurious background")
    elif acc is None:
        add("Ignores a spurious training background", "not measured", "needs per_image.csv of both models")
    elif at_chance:
        add("Ignores a spurious training background", "no",
            f"both models fell into the trap: trained with backgrounds predicting the class {100 * spurious:.0f}% of "
            f"the time, on independent test backgrounds {ersm_label} reaches {100 * acc[0]:.1f}% and {baseline_label} "
            f"{100 * acc[1]:.1f}% (chance {100 * chance:.1f}%)")
    else:
        e, b, d, lo, hi, n = acc
        verdict = "yes" if lo > 0 else ("no" if hi < 0 or d <= 0 else "partly")
        add("Ignores a spurious training background", verdict,
            f"trained with backgrounds predicting the class {100 * spurious:.0f}% of the time, tested on independent "
            f"backgrounds: {ersm_label} {100 * e:.1f}% vs {baseline_label} {100 * b:.1f}%, difference {_pts(d)} points "
            f"(95% CI {_pts(lo)} to {_pts(hi)})")
    return claims
