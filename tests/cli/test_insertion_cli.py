"""`ersm-eval deletion --insertion`: the tables, the console, the report, the refusal at feature level and
--resume (interrupted with Ctrl-C, no kill)."""

from __future__ import annotations

import contextlib
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.resume import store_folder
from ersm_eval.schema import TABLES

runner = CliRunner()
DELETION_TABLES = ["deletion_curves.csv", "deletion_summary.csv", "deletion_tests.csv", "ranking_agreement.csv"]
INSERTION_TABLES = ["insertion_curves.csv", "insertion_summary.csv"]


def _common(checkpoint, limit=8):
    return ["deletion", str(checkpoint), "--dataset", "synthetic", "--limit", str(limit), "--steps", "3",
            "--seeds", "0,1", "--rankings", "energy,center,random", "--level", "input", "--batch-size", "4"]


@pytest.fixture(scope="module")
def runs(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("ins")
    with_insertion = runner.invoke(app, [*_common(tiny_checkpoint), "--insertion", "--out", str(root / "with")])
    assert with_insertion.exit_code == 0, with_insertion.output
    plain = runner.invoke(app, [*_common(tiny_checkpoint), "--no-report", "--quiet", "--out", str(root / "plain")])
    assert plain.exit_code == 0, plain.output
    return root, with_insertion.output


def test_insertion_writes_its_tables_beside_unchanged_deletion_tables(runs):
    root, _ = runs
    for name in INSERTION_TABLES:
        table = pd.read_csv(root / "with" / name)
        assert list(table.columns) == TABLES[name] and len(table)
        assert not (root / "plain" / name).exists()
    for name in DELETION_TABLES:  # --insertion adds tables and changes none
        assert (root / "with" / name).read_bytes() == (root / "plain" / name).read_bytes(), name
    curves = pd.read_csv(root / "with" / "insertion_curves.csv")
    assert sorted(curves.k.unique()) == [0, 8, 15]  # deletion's k grid
    assert set(zip(curves.ranking, curves.order)) == {("energy", "morf"), ("center", "morf"), ("random", "random")}
    summary = json.loads((root / "with" / "summary.json").read_text())
    assert summary["tables"]["insertion_curves.csv"] == len(curves)
    assert summary["settings"]["insertion"] is True
    assert set(summary["evaluation"]["insertion_verdicts"]) == {"energy", "center"}
    assert set(summary["verdict_sentences"]["insertion"]) == {"energy", "center", "random"}
    plain = json.loads((root / "plain" / "summary.json").read_text())
    assert plain["settings"]["insertion"] is False and "insertion" not in plain["verdict_sentences"]


def test_console_prints_insertion_verdicts_after_deletion_verdicts(runs):
    root, output = runs
    text = " ".join(output.split())
    deletion = text.index("energy: deleting in either order")  # the tiny model is at chance: not_testable
    insertion = text.index("Insertion (blurred image, most important tokens put back first):")
    assert deletion < insertion
    assert "energy: inserting what energy calls most important first (MoRF) cannot be judged, the model is at " \
           "chance before any deletion: not_testable." in text[insertion:]


def test_report_shows_insertion_curves_and_summary(runs):
    root, _ = runs
    html = (root / "with" / "report.html").read_text(encoding="utf-8")
    assert "Insertion summary per ranking (insertion_summary.csv)" in html
    assert "insertion_curves.png" in html
    assert (root / "with" / "figures" / "insertion_curves.png").is_file()


def test_feature_level_insertion_is_refused(tiny_checkpoint, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["deletion", str(tiny_checkpoint), "--dataset", "synthetic", "--limit", "4",
                                 "--insertion", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("Error:") == 1
    assert "--insertion needs --level input" in " ".join(result.output.split())
    assert not out.exists() and not store_folder(out).exists()


def _interrupting_bar(after):
    @contextlib.contextmanager
    def bar(total, description):
        done = [0]

        def advance(n):
            done[0] += n
            if done[0] >= after:
                raise KeyboardInterrupt
        yield advance
    return bar


def test_resume_with_insertion(tiny_checkpoint, tmp_path, monkeypatch):
    import cli.deletion

    base = [*_common(tiny_checkpoint, limit=12), "--no-report", "--quiet"]
    whole, out = tmp_path / "whole", tmp_path / "resumed"
    result = runner.invoke(app, [*base, "--insertion", "--out", str(whole)])
    assert result.exit_code == 0, result.output

    with monkeypatch.context() as patch:
        patch.setattr(cli.deletion, "bars", lambda quiet: _interrupting_bar(8))
        stopped = runner.invoke(app, [*base, "--insertion", "--out", str(out)])
    assert stopped.exit_code == 130, stopped.output
    assert not out.exists() and sorted(store_folder(out).glob("*.npz"))

    # the store is keyed by the settings, insertion among them: a resume without it is refused
    refused = runner.invoke(app, [*base, "--out", str(out), "--resume"])
    assert refused.exit_code == 2 and "cannot resume" in refused.output and "settings" in refused.output
    assert not out.exists() and store_folder(out).exists()

    resumed = runner.invoke(app, [*base, "--insertion", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "Resumed 8 of 12 image(s)" in resumed.output
    for name in [*DELETION_TABLES, *INSERTION_TABLES]:
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    assert not store_folder(out).exists()
