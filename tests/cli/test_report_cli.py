"""Reports from the commands: each evaluation writes report.html unless --no-report;
`report` rebuilds one from folders; `compare` writes the comparative report and paper table."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_evaluation_writes_its_report_and_report_rebuilds_it(tmp_path, tiny_checkpoint):
    out = tmp_path / "sp"
    _ok("sparsity", tiny_checkpoint, "--dataset", "synthetic", "--limit", "8", "--quiet", "--out", out)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    rebuilt = tmp_path / "again" / "r.html"
    _ok("report", out, "--out", rebuilt, "--title", "Rebuilt")
    assert "Rebuilt" in rebuilt.read_text() and (rebuilt.parent / "figures").is_dir()


def test_report_on_a_folder_without_tables(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and not (tmp_path / "r.html").exists()


def test_compare_writes_one_comparative_report(tmp_path, tiny_checkpoint, tiny_baseline_checkpoint):
    out = tmp_path / "cmp"
    _ok("compare", tiny_baseline_checkpoint, tiny_checkpoint, "--dataset", "synthetic", "--limit", "6",
        "--seeds", "0", "--quiet", "--out", out)
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "paper_table.md", "paper_table.tex", "occlusion", "figures",
            "deletion-baseline", "deletion-ersm_full", "sparsity-baseline", "sparsity-ersm_full"} <= names
    html = (out / "report.html").read_text()
    assert "baseline" in html and "ersm_full" in html
    table = (out / "paper_table.md").read_text()
    assert "baseline" in table and "ersm_full" in table


def test_compare_refuses_checkpoints_with_the_same_name(tmp_path, tiny_checkpoint):
    result = runner.invoke(app, ["compare", str(tiny_checkpoint), str(tiny_checkpoint), "--dataset", "synthetic",
                                 "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "distinct file names" in " ".join(result.output.split())
    assert not (tmp_path / "cmp").exists()
