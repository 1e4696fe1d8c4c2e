"""Evaluations killed part-way (SIGKILL) and resumed with --resume write byte-identical tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.resume import store_folder
from tests.cli.killed_runs import killed_run




def _tables(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


@pytest.mark.parametrize("command, extra", [
    ("deletion", ["--seeds", "0,1", "--steps", "6"]),
    ("sparsity", []),
    ("occlusion", ["--severities", "0,0.5", "--fills", "gray,noise", "--patterns", "random_squares"]),
])
def test_killed_evaluation_resumes_to_the_same_tables(tiny_checkpoint, tmp_path, command, extra):
    common = [command, str(tiny_checkpoint), "--dataset", "synthetic", "--limit", "24", "--batch-size", "4",
              "--no-report", "--quiet", *extra]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    result = CliRunner().invoke(app, [*common, "--out", str(whole)])
    assert result.exit_code == 0, result.output

    killed = killed_run([*common, "--out", str(resumed)], after=12)
    assert killed.returncode == -9, killed.stderr[-2000:]  # died by SIGKILL, half-way
    assert not resumed.exists()
    chunks = sorted(store_folder(resumed).glob("*.npz"))
    assert chunks, "the finished images' records were kept"

    result = CliRunner().invoke(app, [*common, "--out", str(resumed), "--resume"])
    assert result.exit_code == 0, result.output
    assert "Resumed 12 of 24 image(s)" in result.output
    assert _tables(resumed) == _tables(whole) and _tables(whole)
    assert not store_folder(resumed).exists(), "the resume folder is removed once the result is written"


def test_resume_with_other_settings_is_refused_and_nothing_to_resume_starts_fresh(tiny_checkpoint, tmp_path):
    out = tmp_path / "d"
    base = ["deletion", str(tiny_checkpoint), "--dataset", "synthetic", "--limit", "16", "--batch-size", "4",
            "--no-report", "--quiet", "--steps", "4", "--out", str(out)]
    killed = killed_run([*base, "--seeds", "0"], after=8)
    assert killed.returncode == -9
    result = CliRunner().invoke(app, [*base, "--seeds", "0,1", "--resume"])
    assert result.exit_code != 0
    assert "cannot resume" in result.output and "settings" in result.output and "without --resume" in result.output
    assert not out.exists()
    # without --resume the old records are discarded and the run starts from the first image
    result = CliRunner().invoke(app, [*base, "--seeds", "0,1"])
    assert result.exit_code == 0, result.output
    assert "Resumed" not in result.output and not store_folder(out).exists()
    # --resume with nothing to resume is an ordinary run
    again = tmp_path / "e"
    result = CliRunner().invoke(app, [*base[:-1], str(again), "--seeds", "0,1", "--resume"])
    assert result.exit_code == 0, result.output
    assert _tables(again) == _tables(out)
