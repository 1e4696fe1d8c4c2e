"""ersm-eval study: the folder it writes, the grouping it prints, and refusals without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def _study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "study", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_study_writes_tables_reports_and_paper_tables(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    out = tmp_path / "study"
    done = _study(str(tiny_checkpoint), str(tiny_baseline_checkpoint), "--dataset", "synthetic", "--limit", "8",
                  "--rankings", "energy,cam,random", "--seeds", "0", "--occlusion-patterns", "random_squares",
                  "--occlusion-severities", "0.4", "--n-boot", "200", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "baseline: baseline" in done.stdout and "ersm_full: ersm_full" in done.stdout
    for name in ("groups.csv", "members.csv", "group_summary.csv", "group_differences.csv", "study.json",
                 "study.html", "paper_tables.md", "paper_tables.tex", "paper_tables.csv"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "group_summary.csv")
    assert (summary["n_seeds"] == 1).all() and not summary["training_variance_measured"].any()
    page = (out / "study.html").read_text()
    assert 'href="runs/ersm_full/report.html"' in page and (out / "runs" / "ersm_full" / "report.html").is_file()
    assert "1 seed" in page
    assert sorted(p.name for p in (out / "figures").glob("study_curves_*.png")) == [
        "study_curves_baseline.png", "study_curves_ersm_full.png"]  # one curve figure per group
    assert 'src="figures/study_curves_ersm_full.png"' in page


def test_unknown_group_by_is_one_message_and_no_folder(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    out = tmp_path / "study"
    done = _study(str(tiny_checkpoint), str(tiny_baseline_checkpoint), "--dataset", "synthetic", "--group-by", "nope",
                  "--out", str(out))
    assert done.returncode != 0
    assert "unknown group_by field 'nope'" in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert not out.exists()


def test_repeated_checkpoint_names_are_refused(tiny_checkpoint, tmp_path):
    done = _study(str(tiny_checkpoint), str(tiny_checkpoint), "--dataset", "synthetic", "--out", str(tmp_path / "s"))
    assert done.returncode != 0 and "distinct file names" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr and not (tmp_path / "s").exists()


def test_help_imports_nothing_heavy():
    import json

    from tests.cli.test_help import _help

    result = _help("study")
    assert result.returncode == 0, result.stderr[-2000:]
    *text, imported = result.stdout.rstrip().splitlines()
    assert json.loads(imported) == [] and "--group-by" in "\n".join(text)
