"""The tables of a deletion run from its per-image records (curves, summary, tests, agreement).

:func:`deletion_tables` reads the records sorted by dataset index and needs nothing of
the model: the curves (ranking, seed), the k values, the token count and the class
count say all it needs. Verdicts come from :func:`ersm_eval.verdicts.deletion_verdict`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ersm_eval.agreement import ranking_agreement
from ersm_eval.diagnostics import DIAGNOSTIC_METRICS, energy_diagnostics
from ersm_eval.deletion.settings import DeletionSettings
from ersm_eval.records import no_images_error, sort_records
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_weights, mcnemar_exact, normalized_auc, paired_bootstrap_test, wilson_interval
from ersm_eval.verdicts import chance_test, deletion_verdict, step_counts

__all__ = ["deletion_tables", "token_score_arrays"]


def deletion_tables(records: dict[str, np.ndarray], curve_specs: Sequence[tuple[str, int]], names: Sequence[str],
                    steps: np.ndarray, n_tokens: int, n_classes: int, st: DeletionSettings) -> dict[str, pd.DataFrame]:
    """The tables keyed by file name (deletion_curves.csv, deletion_summary.csv, deletion_tests.csv,
    ranking_agreement.csv, and energy_diagnostics.csv when the records hold diagnostics).

    Args:
        records: per-image records in any order (sorted here).
        curve_specs: (ranking, seed) of every curve, in the records' curve axis order.
        names: the rankings, in table order.
        steps: the k values [S].
        n_tokens: N, tokens of the map.
        n_classes: classes of the model (chance = 1 / n_classes).
        st: the settings (label, bootstrap).

    Raises:
        DatasetError: no images.
    """
    rec = sort_records(records, "deletion")
    n = len(rec["index"])
    if n == 0:
        raise no_images_error("deletion")
    label = st.label
    fraction = steps / n_tokens
    correct = rec["correct"]
    true_prob = rec["true_prob"].astype(np.float64)
    curves = _curves_table(correct, true_prob, curve_specs, steps, fraction, label)
    # per-ranking per-image correctness and true-class probability, averaged over seeds
    columns = {name: [c for c, (n_, _) in enumerate(curve_specs) if n_ == name] for name in names}
    per_image = {name: correct[:, cols, :].mean(1) for name, cols in columns.items()}
    per_image_prob = {name: true_prob[:, cols, :].mean(1) for name, cols in columns.items()}
    accuracy = {name: v.mean(0) for name, v in per_image.items()}
    has_random = "random" in per_image
    weights = bootstrap_weights(n, st.n_boot, st.boot_seed)
    chance = chance_test(int(correct[:, 0, 0].sum()), n, n_classes)  # k = 0: nothing deleted yet

    summary_rows, test_frames = [], []
    for name in names:
        acc = accuracy[name]
        j_peak = int(np.argmax(acc))
        below = np.nonzero(acc < 0.5 * acc[0])[0]
        row = {
            "checkpoint": label, "ranking": name, "n_seeds": len(columns[name]),
            "auc": normalized_auc(fraction, acc), "acc_k0": float(acc[0]),
            "peak_accuracy": float(acc[j_peak]), "peak_k": int(steps[j_peak]),
            "prob_auc": normalized_auc(fraction, per_image_prob[name].mean(0)),
            "max_gap_k": pd.NA, "min_gap_k": pd.NA, "steps_above_random": pd.NA, "steps_below_random": pd.NA,
            "n_steps": len(steps), "half_accuracy_k": int(steps[below[0]]) if len(below) else pd.NA,
            "verdict": "",
        }
        if has_random and name != "random":
            row.update(_auc_comparison(fraction, per_image[name], per_image["random"], weights, "auc_diff"))
            row.update(_auc_comparison(fraction, per_image_prob[name], per_image_prob["random"], weights,
                                       "prob_auc_diff"))
            row["verdict"] = deletion_verdict(row["auc_diff_ci_low"], row["auc_diff_ci_high"], chance.at_chance)
            diff = per_image[name] - per_image["random"]  # [n, S]
            mean, low, high, se, p_boot = paired_bootstrap_test(diff, weights)
            j_gap, j_min = int(np.argmax(mean)), int(np.argmin(mean))
            above, below_random, _ = step_counts(low, high)
            row.update(max_gap_to_random=float(mean[j_gap]), max_gap_k=int(steps[j_gap]),
                       max_gap_ci_low=float(low[j_gap]), max_gap_ci_high=float(high[j_gap]),
                       min_gap_to_random=float(mean[j_min]), min_gap_k=int(steps[j_min]),
                       min_gap_ci_low=float(low[j_min]), min_gap_ci_high=float(high[j_min]),
                       steps_above_random=above, steps_below_random=below_random)
            if len(columns["random"]) == 1:
                test = "mcnemar_exact"
                a_bits = correct[:, columns[name][0], :]
                b_bits = correct[:, columns["random"][0], :]
                statistic, p_value = mcnemar_exact(a_bits, b_bits)
            else:
                test = "paired_bootstrap"
                with np.errstate(invalid="ignore", divide="ignore"):
                    statistic = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.nan)
                p_value = p_boot
            test_frames.append(pd.DataFrame({
                "checkpoint": label, "ranking": name, "k": steps, "test": test,
                "accuracy": acc, "random_accuracy": accuracy["random"], "difference": mean,
                "ci_low": low, "ci_high": high, "statistic": statistic, "p_value": p_value,
            }))
        summary_rows.append(row)
    summary = pd.DataFrame(summary_rows, columns=TABLES["deletion_summary.csv"])
    for col in ("max_gap_k", "min_gap_k", "half_accuracy_k", "peak_k", "n_seeds", "steps_above_random",
                "steps_below_random", "n_steps"):
        summary[col] = summary[col].astype("Int64")
    tests = (
        pd.concat(test_frames, ignore_index=True)[TABLES["deletion_tests.csv"]]
        if test_frames else pd.DataFrame(columns=TABLES["deletion_tests.csv"])
    )

    first_curve = {name: cols[0] for name, cols in columns.items()}
    orders = {name: rec["orders"][:, c, :] for name, c in first_curve.items()}
    agreement = ranking_agreement(orders, label)
    tables = {
        "deletion_curves.csv": curves,
        "deletion_summary.csv": summary,
        "deletion_tests.csv": tests,
        "ranking_agreement.csv": agreement,
    }
    diag = {m: rec[f"diag_{m}"] for m in DIAGNOSTIC_METRICS if f"diag_{m}" in rec}
    if diag:
        tables["energy_diagnostics.csv"] = energy_diagnostics(diag, label, st.n_boot, st.boot_seed)
    return tables


def _curves_table(correct, true_prob, curve_specs, steps, fraction, label) -> pd.DataFrame:
    """deletion_curves.csv: one curve per (ranking, seed) with Wilson intervals."""
    n = correct.shape[0]
    # curves: one per (ranking, seed)
    frames = []
    for c, (name, seed) in enumerate(curve_specs):
        hits = correct[:, c, :].sum(0)
        low, high = wilson_interval(hits, n)
        frames.append(pd.DataFrame({
            "checkpoint": label, "ranking": name, "seed": seed, "k": steps,
            "fraction_removed": fraction, "n_images": n, "accuracy": hits / n,
            "ci_low": low, "ci_high": high, "mean_true_prob": true_prob[:, c, :].mean(0),
        }))
    return pd.concat(frames, ignore_index=True)[TABLES["deletion_curves.csv"]]


def _auc_comparison(fraction: np.ndarray, curves: np.ndarray, random: np.ndarray, weights: np.ndarray, prefix: str) -> dict[str, float]:
    """ΔAUC of per-image curves [n, S] against random's (already averaged over seeds), paired over images:
    ``{prefix, prefix_ci_low, prefix_ci_high, prefix_p_value}``."""
    diff = normalized_auc(fraction, curves) - normalized_auc(fraction, random)  # [n]
    mean, low, high, _, p = paired_bootstrap_test(diff[:, None], weights)
    return {prefix: float(mean[0]), f"{prefix}_ci_low": float(low[0]), f"{prefix}_ci_high": float(high[0]),
            f"{prefix}_p_value": float(p[0])}


def token_score_arrays(records: dict[str, np.ndarray], curves: list[tuple[str, int]], grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Arrays for ``token_scores.npz``: index, label, grid, curve names, orders [n, R, N] and
    one [n, N] array per score (energy, unary, keep, magnitude, cam, ...), sorted by index."""
    rec = sort_records(records, "deletion")
    out: dict[str, np.ndarray] = {
        "index": rec["index"],
        "label": rec["label"],
        "grid": np.asarray(grid, dtype=np.int64),
        "curve_names": np.asarray([f"{n}" if s < 0 else f"{n}_seed{s}" for n, s in curves]),
        "orders": rec["orders"],
    }
    for key, value in rec.items():
        if key.startswith("score_"):
            out[key.removeprefix("score_")] = value
    return out
