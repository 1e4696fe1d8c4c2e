"""The pipelines run a whole evaluation from a checkpoint path and a dataset name, report progress
through the callable they are given, and write the folder the command would."""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import pytest

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.output import default_out
from ersm_eval.pipelines import run_deletion, run_occlusion, run_sparsity

pytestmark = pytest.mark.usefixtures("one_thread")


def _recording_progress(calls):
    @contextmanager
    def bar(total, description):
        calls.append([description, total, 0])
        yield lambda n: calls[-1].__setitem__(2, calls[-1][2] + n)

    return bar


def test_run_deletion_writes_the_folder_and_reports_progress(tmp_path, tiny_checkpoint):
    calls = []
    settings = DeletionSettings(rankings=("cam", "random"), seeds=(0,), n_boot=20)
    run = run_deletion(tiny_checkpoint, "synthetic", settings, out=tmp_path / "del", limit=6,
                       progress=_recording_progress(calls), options={"limit": 6})
    assert run.out == tmp_path / "del" and run.skipped_images == []
    assert calls == [[f"deletion ({tiny_checkpoint.stem})", 6, 6]]  # every image counted once
    written = pd.read_csv(run.out / "deletion_summary.csv")
    assert list(written["ranking"]) == ["cam", "random"] and set(written["checkpoint"]) == {tiny_checkpoint.stem}
    assert run.result.summary.options == {"limit": 6} and run.result.summary.n_images == 6


def test_run_occlusion_and_sparsity(tmp_path, tiny_checkpoint):
    settings = OcclusionSettings(patterns=("center",), severities=(0.5,))
    notes = []
    occ = run_occlusion([tiny_checkpoint], "synthetic", settings, ["m"], out=tmp_path / "occ", limit=4,
                        notify=notes.append)
    assert set(pd.read_csv(occ.out / "occlusion_summary.csv")["checkpoint"]) == {"m"}
    sp = run_sparsity(tiny_checkpoint, "synthetic", label="m", out=tmp_path / "sp", limit=4, gallery_indices=[0])
    assert (sp.out / "maps.npz").is_file() and len(pd.read_csv(sp.out / "per_image.csv")) == 4


def test_pipeline_options_are_checked_before_any_work(tmp_path, tiny_checkpoint):
    with pytest.raises(ConfigError, match="--cache stores backbone features"):
        run_deletion(tiny_checkpoint, "synthetic", DeletionSettings(level="input"), cache=tmp_path / "c",
                     out=tmp_path / "x")
    with pytest.raises(ConfigError, match="--gallery-indices are dataset indices"):
        run_sparsity(tiny_checkpoint, "synthetic", gallery_indices=[-1], out=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_default_output_folders():
    assert str(default_out("deletion", ["a"])) == "runs/deletion-a"
    assert str(default_out("occlusion", ["x/a", "b"])) == "runs/occlusion-x_a-vs-b"
