"""Fake run folders for the report tests, written from code (no binary fixtures).

``write_run`` writes what ``ersm-eval deletion``, ``occlusion`` and ``sparsity`` would:
every schema CSV with all its columns, a summary.json and a maps.npz of random images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# tests/conftest.py puts tests/ on sys.path, where the folder tests/reports would shadow the
# `reports` package as an empty namespace package under a plain `pytest` run (`python -m
# pytest` puts the repository first and is unaffected); the repository root goes first here.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from ersm_eval import verdicts  # noqa: E402
from ersm_eval.results import ModelInfo, RunSummary  # noqa: E402
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES  # noqa: E402

CLASSES = ["albatross", "bunting", "cardinal", "dipper", "egret"]
GRID = 4  # token grid side: N = 16 tokens
SIZE = 32  # image side in the gallery


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=TABLES[name])


N_IMAGES = 200  # images of the deletion curves


def chance_of(base: float) -> verdicts.ChanceTest:
    """The chance test of a fake run whose k = 0 accuracy is ``base`` on N_IMAGES images of len(CLASSES) classes."""
    return verdicts.chance_test(int(round(base * N_IMAGES)), N_IMAGES, len(CLASSES))


def _deletion(rng: np.random.Generator, ckpt: str, gated: bool, base: float = 0.80) -> dict[str, pd.DataFrame]:
    n = GRID * GRID
    ks = np.arange(n)
    test = chance_of(base)
    rankings = ["energy", "unary", "magnitude", "cam", "center"] if gated else ["magnitude", "cam"]
    lerf = {
        "energy": base + 0.04 * np.sin(np.pi * ks / n) - 0.6 * (ks / n) ** 6,
        "unary": base + 0.03 * np.sin(np.pi * ks / n) - 0.6 * (ks / n) ** 5,
        "magnitude": base - 0.5 * (ks / n) ** 3,
        "cam": base - 0.4 * (ks / n) ** 4,
        "center": base - 0.65 * (ks / n) ** 1.2,
    }
    morf = {
        "energy": base - 0.75 * (ks / n) ** 0.5,
        "unary": base - 0.7 * (ks / n) ** 0.6,
        "magnitude": base - 0.7 * (ks / n) ** 0.8,
        "cam": base - 0.1 * (ks / n) ** 4,  # above its LeRF curve: contradicts
        "center": base - 0.65 * (ks / n) ** 1.21,  # nearly its LeRF curve: indistinguishable
    }
    curves, summary, tests = [], [], []
    random_curves = []
    for seed in (0, 1, 2):
        acc = base - 0.65 * (ks / n) ** 1.3 + rng.normal(0, 0.01, n)
        acc = np.clip(acc, 0, 1)  # accuracies lie in [0, 1] (the report refuses others)
        acc[0] = base
        random_curves.append(acc)
        for k, a in zip(ks, acc):
            curves.append(dict(checkpoint=ckpt, ranking="random", order="random", seed=seed, k=k, fraction_removed=k / n,
                               n_images=200, accuracy=a, ci_low=max(a - 0.05, 0.0), ci_high=min(a + 0.05, 1.0),
                               mean_true_prob=a * 0.9))
    random_mean = np.mean(random_curves, axis=0)
    for ranking in rankings:
        row = dict(checkpoint=ckpt, ranking=ranking, n_seeds=2, n_images=200, acc_k0=base, n_steps=n - 1)
        for order, shapes in (("morf", morf), ("lerf", lerf)):
            acc = np.clip(shapes[ranking], 0, 1)
            for k, a in zip(ks, acc):
                curves.append(dict(checkpoint=ckpt, ranking=ranking, order=order, seed=-1, k=k, fraction_removed=k / n,
                                   n_images=200, accuracy=a, ci_low=max(a - 0.05, 0.0), ci_high=min(a + 0.05, 1.0),
                                   mean_true_prob=a * 0.9))
                tests.append(dict(checkpoint=ckpt, ranking=ranking, order=order, k=k, test="bootstrap", accuracy=a,
                                  random_accuracy=random_mean[k], difference=a - random_mean[k],
                                  ci_low=a - random_mean[k] - 0.04, ci_high=a - random_mean[k] + 0.04,
                                  statistic=np.nan, p_value=0.01 if a - random_mean[k] > 0.04 else 0.4))
            diff = float(acc.mean() - random_mean.mean())
            row.update({f"auc_{order}": float(acc.mean()), f"prob_auc_{order}": float(acc.mean() * 0.9),
                        f"auc_diff_{order}": diff, f"auc_diff_{order}_ci_low": diff - 0.02,
                        f"auc_diff_{order}_ci_high": diff + 0.02, f"auc_diff_{order}_p_value": 0.01,
                        f"prob_auc_diff_{order}": diff * 0.9, f"prob_auc_diff_{order}_ci_low": (diff - 0.02) * 0.9,
                        f"prob_auc_diff_{order}_ci_high": (diff + 0.02) * 0.9, f"prob_auc_diff_{order}_p_value": 0.02})
        acc = np.clip(lerf[ranking], 0, 1)
        gap = acc - random_mean
        j, m = int(np.argmax(gap)), int(np.argmin(gap))
        sg = row["auc_lerf"] - row["auc_morf"]
        low, high = sg - 0.02, sg + 0.02
        row.update(sg=sg, sg_ci_low=low, sg_ci_high=high, sg_p_value=0.01, prob_sg=sg * 0.9,
                   prob_sg_ci_low=low * 0.9, prob_sg_ci_high=high * 0.9, prob_sg_p_value=0.02,
                   peak_accuracy=acc.max(), peak_k=int(acc.argmax()), max_gap_to_random=gap[j], max_gap_k=j,
                   max_gap_ci_low=gap[j] - 0.04, max_gap_ci_high=gap[j] + 0.04,
                   half_accuracy_k=int(np.argmax(acc < acc[0] / 2)) if (acc < acc[0] / 2).any() else np.nan,
                   min_gap_to_random=gap[m], min_gap_k=m, min_gap_ci_low=gap[m] - 0.04, min_gap_ci_high=gap[m] + 0.04,
                   steps_above_random=int((gap - 0.04 > 0).sum()), steps_below_random=int((gap + 0.04 < 0).sum()),
                   verdict=verdicts.order_verdict(low, high, test.at_chance))
        summary.append(row)
    for row in summary:
        center = next((r for r in summary if r["ranking"] == "center"), None)
        if center is not None and row["ranking"] != "center":
            d = row["sg"] - center["sg"]
            row.update(sg_minus_center=d, sg_minus_center_ci_low=d - 0.03, sg_minus_center_ci_high=d + 0.03)
    auc = float(random_mean.mean())
    summary.append(dict(checkpoint=ckpt, ranking="random", n_seeds=3, n_images=200, auc_lerf=auc, auc_morf=auc, sg=0.0,
                        acc_k0=base, peak_accuracy=base, peak_k=0, max_gap_to_random=np.nan, max_gap_k=np.nan,
                        max_gap_ci_low=np.nan, max_gap_ci_high=np.nan, half_accuracy_k=12, prob_auc_lerf=auc * 0.9,
                        prob_auc_morf=auc * 0.9, prob_sg=0.0, n_steps=n - 1, verdict=""))
    all_rankings = rankings + ["random"]
    agreement = []
    for i, a in enumerate(all_rankings):
        for b in all_rankings[i + 1:]:
            rho = -0.05 if "random" in (a, b) else float(rng.uniform(-0.8, 0.9))
            agreement.append(dict(checkpoint=ckpt, ranking_a=a, ranking_b=b, n_images=200, spearman_mean=rho,
                                  spearman_sd=0.1, kendall_mean=rho * 0.7, kendall_sd=0.08,
                                  overlap25_mean=0.3, overlap50_mean=0.55))
    tables = {
        "deletion_curves.csv": _frame("deletion_curves.csv", curves),
        "deletion_summary.csv": _frame("deletion_summary.csv", summary),
        "deletion_tests.csv": _frame("deletion_tests.csv", tests),
        "ranking_agreement.csv": _frame("ranking_agreement.csv", agreement),
    }
    if gated:
        tables["energy_diagnostics.csv"] = _frame("energy_diagnostics.csv", [
            dict(checkpoint=ckpt, metric=m, value=v, ci_low=v - 0.05, ci_high=v + 0.05)
            for m, v in (("pairwise_share", 0.97), ("spearman_center", 0.72), ("spearman_neighbours", 0.64))])
        tables.update(_insertion(rng, ckpt, base))
    return tables


def _insertion(rng: np.random.Generator, ckpt: str, base: float) -> dict[str, pd.DataFrame]:
    """insertion_curves.csv and insertion_summary.csv of an input-level run with --insertion: energy recovers
    faster than random insertion, cam slower."""
    n = GRID * GRID
    ks = np.arange(n)
    shapes = {("energy", "morf", -1): 1.0 - (1 - ks / n) ** 4, ("cam", "morf", -1): (ks / n) ** 2,
              **{("random", "random", s): np.clip(ks / n + rng.normal(0, 0.01, n), 0, 1) for s in (0, 1, 2)}}
    curves, summary = [], []
    for (ranking, order, seed), shape in shapes.items():
        acc = np.clip(0.2 + (base - 0.2) * shape, 0, 1)
        curves += [dict(checkpoint=ckpt, ranking=ranking, order=order, seed=seed, k=k, fraction_inserted=k / n,
                        n_images=N_IMAGES, accuracy=a, ci_low=max(a - 0.05, 0.0), ci_high=min(a + 0.05, 1.0),
                        mean_true_prob=a * 0.9) for k, a in zip(ks, acc)]
    for ranking, diff in (("energy", 0.2), ("cam", -0.15), ("random", None)):
        row = dict(checkpoint=ckpt, ranking=ranking, order="random" if diff is None else "morf",
                   n_seeds=3 if diff is None else 1, n_images=N_IMAGES, acc_k0=0.2, auc=0.5 + (diff or 0),
                   prob_auc=0.45 + (diff or 0), verdict="")
        if diff is not None:
            row.update(auc_diff=diff, auc_diff_ci_low=diff - 0.05, auc_diff_ci_high=diff + 0.05, auc_diff_p_value=0.01,
                       prob_auc_diff=diff, prob_auc_diff_ci_low=diff - 0.05, prob_auc_diff_ci_high=diff + 0.05,
                       prob_auc_diff_p_value=0.01)
            row["verdict"] = verdicts.insertion_verdict(diff - 0.05, diff + 0.05, chance_of(base).at_chance)
        summary.append(row)
    return {"insertion_curves.csv": _frame("insertion_curves.csv", curves),
            "insertion_summary.csv": _frame("insertion_summary.csv", summary)}


def _localization(ckpt: str, maps: list[str]) -> pd.DataFrame:
    rows = []
    for metric, uniform, center in (("keep_mass_in_object", 0.30, 0.42), ("box_accuracy", 0.55, 0.50), ("pointing_game", 0.30, 0.60)):
        rows.append(dict(checkpoint=ckpt, map="uniform", metric=metric, value=uniform, ci_low=uniform - 0.03,
                         ci_high=uniform + 0.03, verdict="baseline"))
        rows.append(dict(checkpoint=ckpt, map="center", metric=metric, value=center, ci_low=center - 0.03,
                         ci_high=center + 0.03, verdict="baseline"))
        for m, name in enumerate(maps):
            value = max(uniform, center) + 0.1 - 0.08 * m
            excess = value - max(uniform, center)
            rows.append(dict(checkpoint=ckpt, map=name, metric=metric, value=value, ci_low=value - 0.04, ci_high=value + 0.04,
                             excess=excess, excess_ci_low=excess - 0.03, excess_ci_high=excess + 0.03,
                             verdict=verdicts.localization_verdict(excess - 0.03)))
    return _frame("localization.csv", rows)


def _occlusion(ckpts: list[str]) -> dict[str, pd.DataFrame]:
    rows, summary = [], []
    severities = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    for c, ckpt in enumerate(ckpts):
        for fill in ("gray", "noise"):
            for p, pattern in enumerate(("random_squares", "center", "object")):
                accs = [0.8 - (0.4 + 0.15 * c + 0.1 * p) * s ** (1 + 0.2 * (fill == "noise")) for s in severities]
                for s, a in zip(severities, accs):
                    rows.append(dict(checkpoint=ckpt, fill=fill, pattern=pattern, severity=s, n=200, accuracy=a,
                                     ci_low=a - 0.05, ci_high=a + 0.05, mean_true_prob=a * 0.9,
                                     relative_robustness=a / accs[0]))
                rel = np.array(accs) / accs[0]
                summary.append(dict(checkpoint=ckpt, fill=fill, pattern=pattern, auc=float(np.mean(accs)), acc0=accs[0],
                                    mean_relative_robustness=float(rel.mean()), min_relative_robustness=float(rel.min()),
                                    diff_auc_to_first=np.nan if c == 0 else -0.02 * c,
                                    diff_ci_low=np.nan if c == 0 else -0.03 * c, diff_ci_high=np.nan if c == 0 else -0.01 * c))
    return {"occlusion.csv": _frame("occlusion.csv", rows), "occlusion_summary.csv": _frame("occlusion_summary.csv", summary)}


def _sparsity(rng: np.random.Generator, ckpt: str, gated: bool, n_images: int = 40) -> tuple[dict[str, pd.DataFrame], dict]:
    labels = np.random.default_rng(1234).integers(0, len(CLASSES), n_images)  # same dataset in every run
    correct = rng.random(n_images) < 0.75
    predictions = np.where(correct, labels, (labels + 1) % len(CLASSES))
    mean_keep = np.clip(rng.normal(0.45, 0.1, n_images) + 0.05 * correct, 0, 1) if gated else np.full(n_images, np.nan)
    failures = np.array([""] * n_images, dtype=object)
    wrong = np.flatnonzero(~correct)
    for i, j in enumerate(wrong):
        failures[j] = ("focused", "distracted", "high_confidence")[i % 3]
    per_image = _frame("per_image.csv", [
        dict(checkpoint=ckpt, index=i * 3, label=labels[i], prediction=predictions[i], correct=bool(correct[i]),
             confidence=float(rng.uniform(0.3, 1.0)), mean_keep=mean_keep[i],
             object_keep_mass=float(rng.uniform(0.3, 0.9)) if gated else np.nan, iou=float(rng.uniform(0, 0.8)),
             failure=failures[i])
        for i in range(n_images)
    ])
    def stat(map_name, metric, value, threshold=np.nan, half=0.04):
        return dict(checkpoint=ckpt, map=map_name, metric=metric, threshold=threshold, value=value,
                    ci_low=value - half if np.isfinite(half) else np.nan, ci_high=value + half if np.isfinite(half) else np.nan)

    # metric names as ersm_eval.sparsity writes them
    stats = [stat("", "n_images", n_images, half=np.nan), stat("", "accuracy", correct.mean(), half=0.1),
             stat("", "mean_confidence", 0.7), stat("", "object_area_fraction", 0.3)]
    maps_present = ["keep", "energy", "cam"] if gated else ["cam"]
    if gated:
        keep_right, keep_wrong = np.nanmean(mean_keep[correct]), np.nanmean(mean_keep[~correct])
        stats += [stat("keep", "mean_keep", np.nanmean(mean_keep), half=0.03),
                  stat("keep", "frac_below_half", 0.58, threshold=0.5),
                  stat("keep", "mean_keep_correct", keep_right), stat("keep", "mean_keep_wrong", keep_wrong, half=0.06),
                  stat("keep", "keep_gap_correct_minus_wrong", keep_right - keep_wrong, half=0.03),
                  stat("keep", "largest_component_share", 0.7, threshold=0.5)]
    for m, name in enumerate(maps_present):
        stats += [stat(name, "mass_in_object", 0.71 - 0.1 * m)]
        stats += [stat(name, "iou", 0.45 - 0.05 * m - 0.1 * abs(t - 0.5), threshold=t) for t in (0.25, 0.5, 0.75)]
        stats += [stat(name, "box_iou", 0.5 - 0.05 * m, threshold=0.15),
                  stat(name, "box_accuracy", 0.6 - 0.1 * m, threshold=0.15, half=0.1),
                  stat(name, "pointing_game", 0.8 - 0.1 * m, half=0.08)]
    tables = {"sparsity_summary.csv": _frame("sparsity_summary.csv", stats), "per_image.csv": per_image,
              "localization.csv": _localization(ckpt, maps_present)}
    if gated:
        edges = np.linspace(0, 1, 21)
        counts = np.histogram(np.clip(rng.beta(2, 2.5, 5000), 0, 1), edges)[0]
        tables["keep_histogram.csv"] = _frame("keep_histogram.csv", [
            dict(checkpoint=ckpt, bin_low=lo, bin_high=hi, count=c) for lo, hi, c in zip(edges[:-1], edges[1:], counts)])
    tables["per_class_keep.csv"] = _frame("per_class_keep.csv", [
        dict(checkpoint=ckpt, class_index=c, class_name=CLASSES[c], n=int((labels == c).sum()),
             mean_keep=float(np.nanmean(mean_keep[labels == c])) if gated else np.nan,
             accuracy=float(correct[labels == c].mean())) for c in range(len(CLASSES))])
    # gallery maps: the first right images plus two of each failure kind (small, to keep the tests fast)
    kinds = [np.flatnonzero(failures == k)[:2] for k in ("focused", "distracted", "high_confidence")]
    chosen = np.sort(np.concatenate([np.flatnonzero(correct)[:4], *kinds]))
    m = len(chosen)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks = np.stack([((yy - 16 - (i % 5)) ** 2 + (xx - 14 - (i % 3)) ** 2 < 90).astype(np.float32) for i in range(m)])
    images = (rng.random((m, SIZE, SIZE, 3)) * 120 + masks[..., None] * 120).astype(np.uint8)
    maps = dict(index=per_image["index"].to_numpy()[chosen].astype(np.int64), image=images,
                label=labels[chosen], prediction=predictions[chosen], mask=masks,
                cam=rng.normal(0, 1, (m, GRID, GRID)).astype(np.float32))
    if gated:
        maps["keep"] = rng.uniform(0, 1, (m, GRID, GRID)).astype(np.float32)
        maps["energy"] = rng.uniform(0, 2e-3, (m, GRID, GRID)).astype(np.float32)
    return tables, maps


def _summary(folder: Path, label: str, variant: str, kinds: tuple[str, ...], accuracy: float,
             tables: dict[str, pd.DataFrame], class_names: list[str] | None, boxes_share: float) -> dict:
    """summary.json as the evaluation commands write it (ersm_eval.results.RunSummary), with the
    chance test and the verdict sentences of a deletion run and the localization record of a sparsity run."""
    ckpt = f"checkpoints/{variant}.pt"
    gated = variant != "baseline"
    command = next(k for k in ("deletion", "sparsity", "occlusion") if k in kinds)
    model = ModelInfo(kind="ersm", name="compact_cnn", variant=variant, layer="", grid=[GRID, GRID], patch_size=1,
                      n_tokens=GRID * GRID, head_is_linear=True, has_energy=gated, has_gate=gated,
                      mean=[0.5] * 3, std=[0.25] * 3)
    summary = RunSummary(
        command=command, label=label, n_images=N_IMAGES, class_names=class_names or CLASSES, model=model,
        settings={}, evaluation={}, tables={name: len(table) for name, table in sorted(tables.items())},
        checkpoint=ckpt, checkpoint_sha256="ab" * 32,
        config={"backbone": "compact_cnn", "variant": variant, "alpha": 1e-3, "beta": 1e-3, "patch_size": 1},
        provenance={"trained": "2025-01-01T09:00:00", "epochs": 20},
        dataset={"dataset": "synthetic", "name": "synthetic", "split": "test", "n_images": N_IMAGES},
        options={"checkpoint": ckpt, "dataset": "synthetic", "split": "test", "seeds": "0,1,2"},
        command_line=f"ersm-eval {command} {ckpt} --dataset synthetic --out {folder.name}",
        versions={"ersm_eval": "0.1.0", "numpy": "2.0.0"}, started="2025-01-01T10:00:00+0000", run_seconds=300.0,
    )
    if "deletion" in kinds:
        test = chance_of(accuracy)
        rows = tables["deletion_summary.csv"].to_dict("records")
        summary.chance_test = test.as_dict()
        summary.verdicts = {r["ranking"]: r["verdict"] for r in rows if r["ranking"] != "random"}
        summary.verdict_sentences = {
            "chance": verdicts.chance_sentence(test, label),
            "rankings": {r["ranking"]: verdicts.deletion_sentence(r, test, label) for r in rows if r["ranking"] != "random"},
            "position": None,
        }
        if gated:
            values = dict(zip(tables["energy_diagnostics.csv"]["metric"], tables["energy_diagnostics.csv"]["value"]))
            center, neighbours, share = values["spearman_center"], values["spearman_neighbours"], values["pairwise_share"]
            summary.energy_diagnostics = {"follows_position": verdicts.follows_position(center, neighbours),
                                          "pairwise_share": share, "spearman_center": center, "spearman_neighbours": neighbours}
            summary.verdict_sentences["position"] = verdicts.position_sentence(center, neighbours, share)
    if "sparsity" in kinds:
        summary.evaluation = {"localization": {"measured": True, "large_object_share": boxes_share,
                                               "uninformative": boxes_share > 0.5, "large_object_fraction": 0.8}}
    return summary.to_dict()


def write_run(folder: Path, label: str = "ERSM-Full", variant: str = "ersm_full",
              kinds: tuple[str, ...] = ("deletion", "occlusion", "sparsity"), seed: int = 0,
              occlusion_checkpoints: tuple[str, ...] | None = None, accuracy: float = 0.80,
              legacy: bool = False, class_names: list[str] | None = None, boxes_share: float = 0.1) -> Path:
    """Write a realistic run folder (CSV tables, summary.json, maps.npz) and return it.

    ``accuracy`` is the k = 0 deletion accuracy (0.2 is chance with 5 classes); ``legacy``
    writes the summary.json of an ersm-eval from before the versioned schema (no
    ``schema_version``), which the report refuses; ``boxes_share``: the recorded share of
    images whose object fills the image (above 0.5 the boxes are uninformative).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = f"checkpoints/{variant}.pt"
    gated = variant != "baseline"
    tables: dict[str, pd.DataFrame] = {}
    if "deletion" in kinds:
        tables.update(_deletion(rng, ckpt, gated, accuracy))
    if "occlusion" in kinds:
        tables.update(_occlusion(list(occlusion_checkpoints or (ckpt,))))
    if "sparsity" in kinds:
        sparse, maps = _sparsity(rng, ckpt, gated)
        tables.update(sparse)
        np.savez(folder / MAPS_NPZ, **maps)
    for name, table in tables.items():
        table.to_csv(folder / name, index=False)
    summary = _summary(folder, label, variant, kinds, accuracy, tables, class_names, boxes_share)
    if legacy:
        summary = {k: v for k, v in summary.items() if k not in ("schema_version", "chance_test", "verdicts")}
        summary["tables"] = sorted(tables)
    (folder / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    return folder


@pytest.fixture(scope="session")
def run_writer():
    """The ``write_run`` function, for tests that build their own folders."""
    return write_run
