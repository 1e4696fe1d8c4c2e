"""The tables of a deletion run from its per-image records (curves, summary, tests, agreement).

:func:`deletion_tables` reads the records sorted by dataset index and needs nothing of
the model: the curves (ranking, order, seed), the k values, the token count and the class
count say all it needs. Every scored ranking has a MoRF and a LeRF curve; the summary's
symmetric gain is the per-image LeRF area minus the MoRF area, and its verdict comes from
:func:`ersm_eval.verdicts.orders.order_verdict`. The per-step gaps, step counts, peak and
half-accuracy k of a ranking's row are those of its LeRF order.
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
from ersm_eval.orders import order_areas, summarize_gain
from ersm_eval.stats import bootstrap_weights, mcnemar_exact, paired_bootstrap_test, wilson_interval
from ersm_eval.verdicts import chance_test, step_counts
from ersm_eval.verdicts.orders import order_verdict

__all__ = ["deletion_tables", "gain_columns", "per_image_metrics", "token_score_arrays"]


def _curve_columns(curve_specs: Sequence[tuple[str, str, int]], names: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """ranking -> order -> its curves' positions on the records' curve axis (random: ``random``, every seed)."""
    out: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    for c, (name, order, _) in enumerate(curve_specs):
        if name in out:
            out[name].setdefault(order, []).append(c)
    return out


def per_image_metrics(records: dict[str, np.ndarray], curve_specs: Sequence[tuple[str, str, int]],
                      names: Sequence[str], steps: np.ndarray, n_tokens: int,
                      value: str = "correct") -> dict[str, dict[str, np.ndarray]]:
    """Per-image areas of a deletion run, images sorted by dataset index: ranking -> metric -> [n].

    Metrics of a scored ranking: ``auc_lerf``, ``auc_morf`` (normalized areas of the image's
    curve in each order), ``sg`` (= auc_lerf − auc_morf, the symmetric gain) and, when
    ``random`` ran, ``auc_diff_lerf`` / ``auc_diff_morf`` (each order's area minus random's,
    random averaged over seeds). ``random`` gets ``auc`` only. ``value``: ``correct``
    (correctness, 0/1) or ``true_prob``. A study pairs these over checkpoints.
    """
    rec = sort_records(records, "deletion")
    fraction = np.asarray(steps) / n_tokens
    data = rec[value].astype(np.float64)
    columns = _curve_columns(curve_specs, names)
    out: dict[str, dict[str, np.ndarray]] = {"index": {"index": rec["index"]}}
    random = None
    if "random" in columns and columns["random"]:
        random = order_areas(fraction, data[:, columns["random"]["random"], :].mean(1))
        out["random"] = {"auc": random}
    for name in names:
        if name == "random":
            continue
        lerf = order_areas(fraction, data[:, columns[name]["lerf"][0], :])
        morf = order_areas(fraction, data[:, columns[name]["morf"][0], :])
        metrics = {"auc_lerf": lerf, "auc_morf": morf, "sg": lerf - morf}
        if random is not None:
            metrics.update(auc_diff_lerf=lerf - random, auc_diff_morf=morf - random)
        out[name] = metrics
    return out


def gain_columns(prefix: str, values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """``{prefix, prefix_ci_low, prefix_ci_high, prefix_p_value}`` of per-image values (paired bootstrap)."""
    gain = summarize_gain(values, weights)
    return {prefix: gain.mean, f"{prefix}_ci_low": gain.ci_low, f"{prefix}_ci_high": gain.ci_high,
            f"{prefix}_p_value": gain.p_value}


def deletion_tables(records: dict[str, np.ndarray], curve_specs: Sequence[tuple[str, str, int]], names: Sequence[str],
                    steps: np.ndarray, n_tokens: int, n_classes: int, st: DeletionSettings) -> dict[str, pd.DataFrame]:
    """The tables keyed by file name (deletion_curves.csv, deletion_summary.csv, deletion_tests.csv,
    ranking_agreement.csv, and energy_diagnostics.csv when the records hold diagnostics).

    Args:
        records: per-image records in any order (sorted here).
        curve_specs: (ranking, order, seed) of every curve, in the records' curve axis order.
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
    curves = curves_table(correct, rec["true_prob"].astype(np.float64), curve_specs, steps, fraction, label)
    columns = _curve_columns(curve_specs, names)
    # per (ranking, order) per-image correctness [n, S], random averaged over its seeds
    per_image = {(name, o): correct[:, cols, :].mean(1) for name in names for o, cols in columns[name].items()}
    areas = per_image_metrics(rec, curve_specs, names, steps, n_tokens)
    prob_areas = per_image_metrics(rec, curve_specs, names, steps, n_tokens, "true_prob")
    has_random = "random" in areas
    weights = bootstrap_weights(n, st.n_boot, st.boot_seed)
    chance = chance_test(int(correct[:, 0, 0].sum()), n, n_classes)  # k = 0: nothing deleted yet

    summary_rows, test_frames = [], []
    for name in names:
        main = "random" if name == "random" else "lerf"
        acc = per_image[(name, main)].mean(0)
        j_peak = int(np.argmax(acc))
        below = np.nonzero(acc < 0.5 * acc[0])[0]
        row = {
            "checkpoint": label, "ranking": name, "n_seeds": sum(len(c) for c in columns[name].values()),
            "n_images": n, "acc_k0": float(acc[0]),
            "peak_accuracy": float(acc[j_peak]), "peak_k": int(steps[j_peak]),
            "max_gap_k": pd.NA, "min_gap_k": pd.NA, "steps_above_random": pd.NA, "steps_below_random": pd.NA,
            "n_steps": len(steps), "half_accuracy_k": int(steps[below[0]]) if len(below) else pd.NA,
            "verdict": "",
        }
        if name == "random":  # one order, which serves as both: SG 0 by construction
            auc = float(areas["random"]["auc"].mean())
            prob = float(prob_areas["random"]["auc"].mean())
            row.update(auc_lerf=auc, auc_morf=auc, prob_auc_lerf=prob, prob_auc_morf=prob, sg=0.0, prob_sg=0.0)
            summary_rows.append(row)
            continue
        a, pa = areas[name], prob_areas[name]
        row.update(auc_lerf=float(a["auc_lerf"].mean()), auc_morf=float(a["auc_morf"].mean()),
                   prob_auc_lerf=float(pa["auc_lerf"].mean()), prob_auc_morf=float(pa["auc_morf"].mean()))
        row.update(gain_columns("sg", a["sg"], weights))
        row.update(gain_columns("prob_sg", pa["sg"], weights))
        if "center" in areas and name != "center":
            diff = gain_columns("sg_minus_center", a["sg"] - areas["center"]["sg"], weights)
            diff.pop("sg_minus_center_p_value")
            row.update(diff)
        row["verdict"] = order_verdict(row["sg_ci_low"], row["sg_ci_high"], chance.at_chance)
        if has_random:
            for order in ("lerf", "morf"):
                row.update(gain_columns(f"auc_diff_{order}", a[f"auc_diff_{order}"], weights))
                row.update(gain_columns(f"prob_auc_diff_{order}", pa[f"auc_diff_{order}"], weights))
                test_frames.append(_step_tests(correct, columns, per_image, name, order, steps, weights, label))
            row.update(_gaps(test_frames[-2], steps))  # the LeRF order's per-step gaps
        summary_rows.append(row)
    summary = pd.DataFrame(summary_rows, columns=TABLES["deletion_summary.csv"])
    for col in ("max_gap_k", "min_gap_k", "half_accuracy_k", "peak_k", "n_seeds", "steps_above_random",
                "steps_below_random", "n_steps", "n_images"):
        summary[col] = summary[col].astype("Int64")
    tests = (
        pd.concat(test_frames, ignore_index=True)[TABLES["deletion_tests.csv"]]
        if test_frames else pd.DataFrame(columns=TABLES["deletion_tests.csv"])
    )
    # agreement: each ranking's LeRF order (random: its first seed)
    first_curve = {name: columns[name]["random" if name == "random" else "lerf"][0] for name in names}
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


def _step_tests(correct, columns, per_image, name, order, steps, weights, label) -> pd.DataFrame:
    """deletion_tests.csv rows of one order of a ranking against random at every k, paired over images:
    exact McNemar with one random seed, else a paired bootstrap (mean difference / bootstrap SE)."""
    diff = per_image[(name, order)] - per_image[("random", "random")]  # [n, S]
    mean, low, high, se, p_boot = paired_bootstrap_test(diff, weights)
    if len(columns["random"]["random"]) == 1:
        test = "mcnemar_exact"
        statistic, p_value = mcnemar_exact(correct[:, columns[name][order][0], :],
                                           correct[:, columns["random"]["random"][0], :])
    else:
        test = "paired_bootstrap"
        with np.errstate(invalid="ignore", divide="ignore"):
            statistic = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.nan)
        p_value = p_boot
    return pd.DataFrame({
        "checkpoint": label, "ranking": name, "order": order, "k": steps, "test": test,
        "accuracy": per_image[(name, order)].mean(0), "random_accuracy": per_image[("random", "random")].mean(0),
        "difference": mean, "ci_low": low, "ci_high": high, "statistic": statistic, "p_value": p_value,
    })


def _gaps(tests: pd.DataFrame, steps: np.ndarray) -> dict[str, float | int]:
    """The largest and smallest per-k gap to random (with k and interval) and the step counts of one order."""
    mean, low, high = (tests[c].to_numpy(dtype=np.float64) for c in ("difference", "ci_low", "ci_high"))
    j_gap, j_min = int(np.argmax(mean)), int(np.argmin(mean))
    above, below_random, _ = step_counts(low, high)
    return dict(max_gap_to_random=float(mean[j_gap]), max_gap_k=int(steps[j_gap]),
                max_gap_ci_low=float(low[j_gap]), max_gap_ci_high=float(high[j_gap]),
                min_gap_to_random=float(mean[j_min]), min_gap_k=int(steps[j_min]),
                min_gap_ci_low=float(low[j_min]), min_gap_ci_high=float(high[j_min]),
                steps_above_random=above, steps_below_random=below_random)


def curves_table(correct, true_prob, curve_specs, steps, fraction, label, table: str = "deletion_curves.csv",
                 fraction_column: str = "fraction_removed") -> pd.DataFrame:
    """A curves table (deletion_curves.csv, or insertion_curves.csv with ``fraction_inserted``): one curve per
    (ranking, order, seed) with Wilson intervals, from correctness and true-class probabilities [n, curves, k]."""
    n = correct.shape[0]
    frames = []
    for c, (name, order, seed) in enumerate(curve_specs):
        hits = correct[:, c, :].sum(0)
        low, high = wilson_interval(hits, n)
        frames.append(pd.DataFrame({
            "checkpoint": label, "ranking": name, "order": order, "seed": seed, "k": steps,
            fraction_column: fraction, "n_images": n, "accuracy": hits / n,
            "ci_low": low, "ci_high": high, "mean_true_prob": true_prob[:, c, :].mean(0),
        }))
    return pd.concat(frames, ignore_index=True)[TABLES[table]]


def token_score_arrays(records: dict[str, np.ndarray], curves: list[tuple[str, str, int]], grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Arrays for ``token_scores.npz``: index, label, grid, curve names, orders [n, R, N] and
    one [n, N] array per score (energy, unary, keep, magnitude, cam, ...), sorted by index."""
    rec = sort_records(records, "deletion")
    out: dict[str, np.ndarray] = {
        "index": rec["index"],
        "label": rec["label"],
        "grid": np.asarray(grid, dtype=np.int64),
        "curve_names": np.asarray([f"{n}_{o}" if s < 0 else f"{n}_seed{s}" for n, o, s in curves]),
        "orders": rec["orders"],
    }
    for key, value in rec.items():
        if key.startswith("score_"):
            out[key.removeprefix("score_")] = value
    return out
