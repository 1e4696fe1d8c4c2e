"""The output tables: file names and columns shared by the evaluators and the reports.

Every CSV is in long (tidy) form. Evaluators return DataFrames with exactly these
columns (in this order, extra columns only where noted); the ``reports`` package
reads them back and checks them with :func:`check_columns`.
"""

from __future__ import annotations

__all__ = ["TABLES", "SUMMARY_JSON", "MAPS_NPZ", "REPORT_HTML", "check_columns"]

SUMMARY_JSON = "summary.json"  # options, checkpoint sha256 + config, dataset, versions, command line, run time
MAPS_NPZ = "maps.npz"  # keep/energy/cam maps of the images chosen for galleries (see ersm_eval.sparsity)
REPORT_HTML = "report.html"

TABLES: dict[str, list[str]] = {
    # deletion (ersm_eval.deletion); order is morf (most important first), lerf (least important first)
    # or random; seed is -1 for the deterministic orders
    "deletion_curves.csv": [
        "checkpoint", "ranking", "order", "seed", "k", "fraction_removed", "n_images",
        "accuracy", "ci_low", "ci_high", "mean_true_prob",
    ],
    # one row per ranking. auc_lerf / auc_morf: normalized area under the accuracy curve of each order
    # (random's row: its one order, in both). auc_diff_<order>: mean over images of that order's area minus
    # random's (random averaged over seeds), paired bootstrap 95% interval and two-sided p. sg: the symmetric
    # gain, mean over images of AUC(LeRF) − AUC(MoRF), with interval and p (random: 0 by construction);
    # sg_minus_center: paired sg − the center ranking's (needs center in the run). prob_*: the same for the
    # true-class probability. peak, half-accuracy k, max/min gap to random and steps_above/below_random
    # (k whose paired interval lies above/below 0, of n_steps) are those of the LeRF order. verdict:
    # supports, contradicts, indistinguishable or not_testable from the sg interval (ersm_eval.verdicts).
    "deletion_summary.csv": [
        "checkpoint", "ranking", "n_seeds", "n_images", "acc_k0", "auc_lerf", "auc_morf",
        "auc_diff_lerf", "auc_diff_lerf_ci_low", "auc_diff_lerf_ci_high", "auc_diff_lerf_p_value",
        "auc_diff_morf", "auc_diff_morf_ci_low", "auc_diff_morf_ci_high", "auc_diff_morf_p_value",
        "sg", "sg_ci_low", "sg_ci_high", "sg_p_value",
        "sg_minus_center", "sg_minus_center_ci_low", "sg_minus_center_ci_high",
        "prob_auc_lerf", "prob_auc_morf",
        "prob_auc_diff_lerf", "prob_auc_diff_lerf_ci_low", "prob_auc_diff_lerf_ci_high", "prob_auc_diff_lerf_p_value",
        "prob_auc_diff_morf", "prob_auc_diff_morf_ci_low", "prob_auc_diff_morf_ci_high", "prob_auc_diff_morf_p_value",
        "prob_sg", "prob_sg_ci_low", "prob_sg_ci_high", "prob_sg_p_value",
        "peak_accuracy", "peak_k",
        "max_gap_to_random", "max_gap_k", "max_gap_ci_low", "max_gap_ci_high",
        "min_gap_to_random", "min_gap_k", "min_gap_ci_low", "min_gap_ci_high",
        "steps_above_random", "steps_below_random", "n_steps", "half_accuracy_k", "verdict",
    ],
    # each order of each ranking against random (seed-pooled) at each k, paired over images
    "deletion_tests.csv": [
        "checkpoint", "ranking", "order", "k", "test", "accuracy", "random_accuracy", "difference",
        "ci_low", "ci_high", "statistic", "p_value",
    ],
    # ranking pairs compared per image, each ranking by its LeRF order (random: its first seed)
    "ranking_agreement.csv": [
        "checkpoint", "ranking_a", "ranking_b", "n_images", "spearman_mean", "spearman_sd",
        "kendall_mean", "kendall_sd", "overlap25_mean", "overlap50_mean",
    ],
    # insertion (ersm_eval.deletion with insertion=True, input level only): start from the blurred image and
    # put the original pixels back under the first k tokens of an order; order is morf (most important first)
    # for a scored ranking, random (one curve per seed) for random; fraction_inserted = k / N
    "insertion_curves.csv": [
        "checkpoint", "ranking", "order", "seed", "k", "fraction_inserted", "n_images",
        "accuracy", "ci_low", "ci_high", "mean_true_prob",
    ],
    # one row per ranking. auc / prob_auc: normalized area under the insertion curve of accuracy / of the
    # true-class probability (random: its seed-mean curve); auc_diff: mean over images of the ranking's area
    # minus random's (seed-averaged), paired bootstrap 95% interval and two-sided p (prob_auc_diff: the same
    # for the probability); acc_k0: accuracy on the blurred image (nothing inserted); verdict: supports,
    # contradicts, indistinguishable or not_testable from the auc_diff interval (ersm_eval.verdicts.insertion)
    "insertion_summary.csv": [
        "checkpoint", "ranking", "order", "n_seeds", "n_images", "acc_k0", "auc", "prob_auc",
        "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high", "auc_diff_p_value",
        "prob_auc_diff", "prob_auc_diff_ci_low", "prob_auc_diff_ci_high", "prob_auc_diff_p_value", "verdict",
    ],
    # energy diagnostics of an ERSM model (ersm_eval.diagnostics), written by the deletion run;
    # metric is pairwise_share, spearman_center or spearman_neighbours; intervals bootstrap over images
    "energy_diagnostics.csv": ["checkpoint", "metric", "value", "ci_low", "ci_high"],
    # occlusion (ersm_eval.occlusion)
    "occlusion.csv": [
        "checkpoint", "fill", "pattern", "severity", "n", "accuracy", "ci_low", "ci_high",
        "mean_true_prob", "relative_robustness",
    ],
    "occlusion_summary.csv": [
        "checkpoint", "fill", "pattern", "auc", "acc0", "mean_relative_robustness",
        "min_relative_robustness", "diff_auc_to_first", "diff_ci_low", "diff_ci_high",
    ],
    # sparsity (ersm_eval.sparsity): scalar statistics in long form
    # map is keep, energy or cam (or '' for statistics of no map); threshold is NaN where unused
    "sparsity_summary.csv": ["checkpoint", "map", "metric", "threshold", "value", "ci_low", "ci_high"],
    # localization (ersm_eval.localization): one row per (map, metric); map is keep/energy/cam or a
    # baseline (uniform, center); metric is mass_in_object, iou@<t>, box_iou, box_gt_known, box_accuracy,
    # pointing_game; excess = this map minus the better baseline, paired per image (NaN on baseline rows);
    # verdict in ersm_eval.verdicts.LOCALIZATION_VERDICTS; extra columns after these: baseline, n_images
    "localization.csv": [
        "checkpoint", "map", "metric", "value", "ci_low", "ci_high", "excess", "excess_ci_low",
        "excess_ci_high", "verdict",
    ],
    # randomization check of the maps (ersm_eval.randomization), written by the sparsity run: per map and
    # cumulative step (head, spatial, backbone_last), the mean per-image Spearman correlation of the map
    # with the original model's, bootstrap 95% interval over the n_images with a defined correlation
    "map_randomization.csv": ["checkpoint", "map", "randomized", "n_images", "spearman", "ci_low", "ci_high"],
    "keep_histogram.csv": ["checkpoint", "bin_low", "bin_high", "count"],
    "per_class_keep.csv": ["checkpoint", "class_index", "class_name", "n", "mean_keep", "accuracy"],
    "per_image.csv": [
        "checkpoint", "index", "label", "prediction", "correct", "confidence", "mean_keep",
        "object_keep_mass", "iou", "failure",
    ],
}


def check_columns(name: str, columns: list[str]) -> list[str]:
    """Return the required columns of table ``name`` missing from ``columns``."""
    return [c for c in TABLES[name] if c not in columns]
