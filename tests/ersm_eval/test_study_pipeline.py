"""The study pipeline end to end: 2 variants × 3 seeds on one frozen backbone, grouped, aggregated by hand,
one backbone pass per image shared by all six, equal to separate runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ersm_core.model import ModelConfig, build_model
from ersm_core.training import TrainConfig, train
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.study import run_study

LIMIT = 12
DELETION = DeletionSettings(rankings=("energy", "cam", "random"), seeds=(0, 1))
OCCLUSION = OcclusionSettings(patterns=("random_squares",), severities=(0.4,))


def _train(path: Path, variant: str, seed: int, weights: Path) -> Path:
    config = ModelConfig(num_classes=10, variant=variant, image_size=64, freeze_backbone=True)
    result = train(config, TrainConfig(dataset="synthetic", epochs=1, batch_size=32, seed=seed, device="cpu",
                                       n_train=96, n_test=32), weights=weights)
    result.save(path)
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory, one_thread) -> list[Path]:
    """Six checkpoints: baseline and ersm_full, seeds 0, 1, 2, on one frozen compact_cnn backbone."""
    folder = tmp_path_factory.mktemp("study")
    torch.manual_seed(123)
    weights = folder / "backbone.pt"
    torch.save(build_model(ModelConfig(num_classes=10, image_size=64)).backbone.state_dict(), weights)
    return [_train(folder / f"{v}-s{s}.pt", v, s, weights) for v in ("baseline", "ersm_full") for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def study(members, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "study"
    return run_study(members, "synthetic", DELETION, OCCLUSION, out=out, limit=LIMIT, n_boot=300, batch_size=5)


def test_groups_are_the_variants_with_three_seeds(study):
    groups = pd.read_csv(study.out / "groups.csv")
    assert sorted(groups["group"].unique()) == ["baseline", "ersm_full"]
    assert groups.groupby("group")["seed"].apply(sorted).to_dict() == {"baseline": [0, 1, 2], "ersm_full": [0, 1, 2]}


def test_one_backbone_pass_shared_by_all_six(study):
    assert study.bundles == [[p for p in ("baseline-s0", "baseline-s1", "baseline-s2", "ersm_full-s0",
                                            "ersm_full-s1", "ersm_full-s2")]]
    record = json.loads((study.out / "study.json").read_text())
    assert record["shared_hits"] > 5 * record["backbone_passes"]  # five of six members are answered from the memo


def test_members_and_group_mean_std_recomputed_by_hand(study):
    members = pd.read_csv(study.out / "members.csv")
    summary = pd.read_csv(study.out / "group_summary.csv")
    for group in ("baseline", "ersm_full"):
        accuracy = []
        for seed in (0, 1, 2):
            per_image = pd.read_csv(study.out / "runs" / f"{group}-s{seed}" / "sparsity" / "per_image.csv")
            own = float(per_image["correct"].mean())  # the model as trained, its gate on
            row = members[(members["checkpoint"] == f"{group}-s{seed}") & (members["metric"] == "accuracy")]
            assert abs(float(row["value"].iloc[0]) - own) < 1e-9
            accuracy.append(own)
        row = summary[(summary["group"] == group) & (summary["metric"] == "accuracy")].iloc[0]
        assert abs(row["mean"] - np.mean(accuracy)) < 1e-9
        assert abs(row["std"] - np.std(accuracy, ddof=1)) < 1e-9
        assert int(row["n_seeds"]) == 3


def test_auc_diff_matches_each_run_and_group_interval_is_wide(study):
    members = pd.read_csv(study.out / "members.csv")
    summary = pd.read_csv(study.out / "group_summary.csv")
    for checkpoint in ("ersm_full-s0", "ersm_full-s1"):
        table = pd.read_csv(study.out / "runs" / checkpoint / "deletion" / "deletion_summary.csv")
        for column in ("sg", "auc_diff_lerf", "auc_diff_morf"):
            run = float(table[table["ranking"] == "energy"][column].iloc[0])
            row = members[(members["checkpoint"] == checkpoint) & (members["metric"] == f"energy_{column}")]
            assert abs(float(row["value"].iloc[0]) - run) < 1e-9, column
    checked = 0
    for (group, metric), rows in members.groupby(["group", "metric"]):
        widest = float((rows["ci_high"] - rows["ci_low"]).max())
        g = summary[(summary["group"] == group) & (summary["metric"] == metric)].iloc[0]
        if not np.isfinite(widest):
            continue
        assert g["ci_high"] - g["ci_low"] >= widest - 1e-12, (group, metric)  # never surer than one run
        checked += 1
    assert checked >= 6


def test_differences_and_paper_inputs(study):
    differences = pd.read_csv(study.out / "group_differences.csv")
    assert set(differences["group_a"]) == {"baseline"} and set(differences["group_b"]) == {"ersm_full"}
    assert {"accuracy", "loss", "cam_sg", "cam_auc_diff_lerf", "localization_excess"} <= set(differences["metric"])
    summary = pd.read_csv(study.out / "group_summary.csv")
    assert "mean_keep" in set(summary[summary["group"] == "ersm_full"]["metric"])
    assert "mean_keep" not in set(summary[summary["group"] == "baseline"]["metric"])


def test_shared_pass_equals_separate_runs(members, study, tmp_path):
    """Each member's tables from the shared pass are those of its own separate evaluations, bit for bit."""
    from ersm_eval.pipelines import run_deletion, run_occlusion, run_sparsity

    member = members[4]  # ersm_full-s1: not the one whose backbone computes
    deletion = run_deletion(member, "synthetic", DELETION, out=tmp_path / "d", limit=LIMIT, batch_size=7).result
    sparsity = run_sparsity(member, "synthetic", label=member.stem, out=tmp_path / "s", limit=LIMIT, batch_size=7).result
    occlusion = run_occlusion([member], "synthetic", OCCLUSION, [member.stem], out=tmp_path / "o", limit=LIMIT, batch_size=7).result
    run = study.out / "runs" / member.stem
    for result, kind, names in ((deletion, "deletion", ("deletion_curves.csv", "deletion_summary.csv")),
                                (sparsity, "sparsity", ("per_image.csv", "localization.csv")),
                                (occlusion, "occlusion", ("occlusion_summary.csv",))):
        for name in names:
            pd.testing.assert_frame_equal(pd.read_csv(run / kind / name), pd.read_csv(tmp_path / kind[0] / name))


def test_bad_group_by_writes_nothing(members, tmp_path):
    from ersm_core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown group_by field 'nope'"):
        run_study(members[:2], "synthetic", DELETION, OCCLUSION, out=tmp_path / "x", group_by=["nope"], limit=4)
    assert not (tmp_path / "x").exists()
