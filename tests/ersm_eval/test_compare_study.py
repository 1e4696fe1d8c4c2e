"""A comparison is a study whose groups hold one checkpoint each: its tables, its shared evaluation,
the randomization check of every checkpoint's maps, and the refusal under torchrun."""

from __future__ import annotations

import filecmp
from dataclasses import replace

import pandas as pd
import pytest

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines import compare_evaluations, run_deletion

DELETION = DeletionSettings(rankings=("energy", "cam", "random"), seeds=(0,))
OCCLUSION = OcclusionSettings(fills=("gray",), patterns=("random_squares",), severities=(0.4,), seeds=(0,))
LIMIT = 8


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_checkpoint, tiny_baseline_checkpoint):
    folder = tmp_path_factory.mktemp("compare")
    run = compare_evaluations(folder, [tiny_baseline_checkpoint, tiny_checkpoint], ["baseline", "ersm_full"],
                              "synthetic", DELETION, OCCLUSION, limit=LIMIT, batch_size=3, n_boot=200)
    assert run.n_images == LIMIT and run.resumed_images == 0
    return folder, run.folders


def test_every_checkpoint_is_its_own_group(compared):
    folder, folders = compared
    assert [f.name for f in folders] == ["deletion-baseline", "sparsity-baseline", "deletion-ersm_full",
                                         "sparsity-ersm_full", "occlusion"]
    groups = pd.read_csv(folder / "groups.csv")
    assert groups["group"].tolist() == ["baseline", "ersm_full"] == groups["checkpoint"].tolist()
    summary = pd.read_csv(folder / "group_summary.csv")
    assert set(summary["group"]) == {"baseline", "ersm_full"} and (summary["n_seeds"] == 1).all()


def test_differences_are_the_paired_differences_of_the_two_checkpoints(compared):
    folder, _ = compared
    first = {}
    for label in ("baseline", "ersm_full"):  # the models as trained (the gate on), on the same images
        first[label] = float(pd.read_csv(folder / f"sparsity-{label}" / "per_image.csv")["correct"].mean())
    differences = pd.read_csv(folder / "group_differences.csv")
    row = differences[differences["metric"] == "accuracy"].iloc[0]
    assert (row["group_a"], row["group_b"]) == ("baseline", "ersm_full")
    assert row["diff"] == pytest.approx(first["baseline"] - first["ersm_full"], abs=1e-12)
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    members = pd.read_csv(folder / "members.csv")
    accuracy = members[members["metric"] == "accuracy"].set_index("checkpoint")["value"]
    assert accuracy["ersm_full"] == pytest.approx(first["ersm_full"], abs=1e-12)


def test_each_sparsity_folder_holds_the_randomization_check(compared):
    folder, _ = compared
    table = pd.read_csv(folder / "sparsity-ersm_full" / "map_randomization.csv")
    for name in ("keep", "energy", "cam"):
        assert table.loc[table["map"] == name, "randomized"].tolist() == ["head", "spatial", "backbone_last"], name
    baseline = pd.read_csv(folder / "sparsity-baseline" / "map_randomization.csv")
    assert set(baseline["map"]) == {"cam"}  # a plain CNN has no keep or energy map


def test_shared_evaluation_equals_a_separate_run(compared, tiny_checkpoint, tmp_path):
    folder, _ = compared
    alone = run_deletion(tiny_checkpoint, "synthetic", settings=replace(DELETION, label="ersm_full"),
                         out=tmp_path / "alone", limit=LIMIT, batch_size=5)
    for name in ("deletion_curves.csv", "deletion_summary.csv", "per_image.csv"):
        if (alone.out / name).is_file():
            assert filecmp.cmp(alone.out / name, folder / "deletion-ersm_full" / name, shallow=False), name


def test_no_randomization_and_torchrun(tmp_path, tiny_checkpoint, monkeypatch):
    folder = tmp_path / "c"
    folder.mkdir()
    compare_evaluations(folder, [tiny_checkpoint], ["ersm_full"], "synthetic", DELETION, OCCLUSION, skip=("occlusion",),
                        limit=4, n_boot=100, randomization=False)
    assert not (folder / "sparsity-ersm_full" / "map_randomization.csv").exists()
    assert pd.read_csv(folder / "group_differences.csv").empty  # one checkpoint: no pair
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        compare_evaluations(tmp_path / "d", [tiny_checkpoint], ["ersm_full"], "synthetic", DELETION, OCCLUSION,
                            limit=4)


def test_input_level_deletion_is_refused_before_any_work(tmp_path, tiny_checkpoint):
    from ersm_eval.pipelines.study import run_study

    inputs = replace(DELETION, level="input")
    with pytest.raises(ConfigError, match="a comparison evaluates deletion at feature level"):
        compare_evaluations(tmp_path, [tiny_checkpoint], ["ersm_full"], "synthetic", inputs, OCCLUSION, limit=4)
    with pytest.raises(ConfigError, match="a study evaluates deletion at feature level"):
        run_study([tiny_checkpoint], "synthetic", inputs, OCCLUSION, out=tmp_path / "study", limit=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
