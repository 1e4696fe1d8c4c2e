"""``ersm_eval.study(...)``: the command's study from Python, pages included, with the command's defaults."""

from __future__ import annotations

import pandas as pd

import ersm_eval
from ersm_eval.deletion import DeletionSettings


def test_study_from_python_writes_the_commands_folder(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    out = tmp_path / "study"
    run = ersm_eval.study([tiny_checkpoint, tiny_baseline_checkpoint], "synthetic", out, limit=4, n_boot=100,
                          skip=("occlusion",), deletion=DeletionSettings(rankings=("energy", "random"), seeds=(0,)))
    assert run.out == out and sorted(run.groups["group"]) == ["baseline", "ersm_full"]
    for name in ("groups.csv", "members.csv", "group_summary.csv", "group_differences.csv", "study.json", "study.html",
                 "paper_tables.md", "paper_tables.tex", "paper_tables.csv"):
        assert (out / name).is_file(), name
    assert (out / "runs" / "ersm_full" / "report.html").is_file()
    members = pd.read_csv(out / "members.csv")
    pd.testing.assert_frame_equal(members, run.tables.members.reset_index(drop=True), check_dtype=False)
    assert ersm_eval.study.__module__ == "ersm_eval.pipelines.study" and "study" in ersm_eval.__all__


def test_study_without_pages(tiny_checkpoint, tmp_path):
    out = tmp_path / "bare"
    ersm_eval.study([tiny_checkpoint], "synthetic", out, limit=4, n_boot=100, skip=("occlusion", "sparsity"),
                    report=False, deletion=DeletionSettings(rankings=("energy", "random"), seeds=(0,)))
    assert (out / "group_summary.csv").is_file() and not (out / "study.html").exists()
