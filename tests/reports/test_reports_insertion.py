"""Insertion in the report: one figure in the deletion section and the summary table with the verdict words
of ersm_eval.verdicts, only when the insertion tables are there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from ersm_eval import verdicts
from reports import build_report, load_run, plot_insertion_curves

ROOT = Path(__file__).resolve().parents[2]


def test_report_shows_the_insertion_figure_and_table(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "ersm", kinds=("deletion",)))
    assert {"insertion_curves.csv", "insertion_summary.csv"} <= set(run.tables)
    out = build_report([run], tmp_path / "out" / "r.html", figures_dir=tmp_path / "figs")
    html = out.read_text(encoding="utf-8")
    assert (tmp_path / "figs" / "insertion_curves.png").is_file() and (tmp_path / "figs" / "insertion_curves.svg").is_file()
    assert "Insertion summary per ranking (insertion_summary.csv)" in html
    assert html.index("Insertion summary per ranking") > html.index('id="deletion"')
    assert verdicts.insertion_verdict_words("supports") in html  # energy: faster than random insertion
    assert verdicts.insertion_verdict_words("contradicts") in html  # cam: slower


def test_no_insertion_tables_no_insertion_in_the_report(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "base", label="Baseline", variant="baseline", kinds=("deletion",)))
    assert "insertion_summary.csv" not in run.tables
    out = build_report([run], tmp_path / "out" / "r.html", figures_dir=tmp_path / "figs")
    assert "Insertion summary" not in out.read_text(encoding="utf-8")
    assert not (tmp_path / "figs" / "insertion_curves.png").exists()


def test_insertion_figure_draws_every_ranking_and_random_with_its_seeds(tmp_path, run_writer):
    curves = pd.read_csv(run_writer(tmp_path / "r", kinds=("deletion",)) / "insertion_curves.csv")
    fig = plot_insertion_curves(curves, no_information={"nothing"})
    labels = fig.legends[0].get_texts()
    texts = [t.get_text() for t in labels]
    assert any(t.startswith("Energy") and "most important first (MoRF)" in t for t in texts)
    assert "Random insertion (mean of 3 seeds)" in texts
    assert fig.axes[0].get_xlabel() == "Patches put back into the blurred image (k)"


def test_the_report_side_of_insertion_imports_no_torch():
    code = ("import sys, reports.figures_insertion, reports.html.sections, reports.html.detail_tables; "
            "print('torch' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           env={"PYTHONPATH": str(ROOT)})
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "False"
