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


def _write_run():
    """conftest.write_run of tests/reports (fake run folders written from code), loaded by path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "reports" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_report_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_run


def _snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_report_out_never_replaces_what_it_did_not_write(tmp_path):
    run = _write_run()(tmp_path / "run", kinds=("deletion",))
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not a report")
    inputs = _snapshot(run)
    for target in (checkpoint, run / "deletion_summary.csv", run / "summary.json"):
        result = runner.invoke(app, ["report", str(run), "--out", str(target)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert checkpoint.read_bytes() == b"not a report"
    assert _snapshot(run) == inputs
    # a figures folder of someone else's beside the chosen name is not written into
    (tmp_path / "paper" / "figures").mkdir(parents=True)
    (tmp_path / "paper" / "figures" / "deletion_curves.png").write_bytes(b"mine")
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "paper" / "r.html")])
    assert result.exit_code == 2 and "was not written by ersm-eval" in " ".join(result.output.split())
    assert (tmp_path / "paper" / "figures" / "deletion_curves.png").read_bytes() == b"mine"
    assert not (tmp_path / "paper" / "r.html").exists()


def test_report_out_a_folder_and_rebuilding_in_place(tmp_path):
    run = _write_run()(tmp_path / "run", kinds=("deletion",))
    tables = {p.name: p.read_bytes() for p in run.glob("*.csv")}
    _ok("report", run, "--out", tmp_path / "existing")  # a new name without suffix: a folder
    assert (tmp_path / "existing" / "report.html").is_file()
    (tmp_path / "dir").mkdir()
    _ok("report", run, "--out", tmp_path / "dir")  # an existing folder
    assert (tmp_path / "dir" / "report.html").is_file() and (tmp_path / "dir" / "figures").is_dir()
    _ok("report", run, "--out", tmp_path / "dir")  # its own report is replaced
    assert {p.name: p.read_bytes() for p in run.glob("*.csv")} == tables
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_report_on_a_truncated_table_is_one_message(tmp_path):
    run = _write_run()(tmp_path / "run", kinds=("deletion",))
    lines = (run / "deletion_curves.csv").read_text().splitlines(keepends=True)
    (run / "deletion_curves.csv").write_text("".join(lines[:-1]))
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "truncated or edited" in " ".join(result.output.split())
    assert not (tmp_path / "r.html").exists()


def test_report_out_never_writes_into_a_run_folder_it_reads(tmp_path):
    """The run folders are the report's inputs: an --out that is one, or lies inside one (its figures
    included), is refused with one line and the folders stay byte for byte as they were."""
    from tests.safety.inputs import one_line_error, run_cli, untouched

    write_run = _write_run()
    first = write_run(tmp_path / "del", kinds=("deletion",))
    second = write_run(tmp_path / "sp", kinds=("deletion",))
    with untouched(first, second):
        for args in ([first, "--out", first, "--title", "Changed"], [first, second, "--out", second / "report.html"],
                     [first, "--out", first / "sub" / "r.html"], [first, "--out", first / "figures"]):
            one_line_error(run_cli("report", *args), "which this report reads")
    assert not (first / "sub").exists()
    _ok("report", first, second, "--out", tmp_path / "r.html")  # beside them: fine
    assert (tmp_path / "r.html").is_file()


def test_the_report_path_imports_no_torch(tmp_path):
    """`report --help` and a real `report RUN_FOLDER` run without importing torch or timm: the
    report is rebuilt from tables alone, in a fresh interpreter each."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = _write_run()(tmp_path / "run")
    env = {**__import__("os").environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    timed = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli.main", "report", "--help"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert timed.returncode == 0, timed.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timed.stderr.splitlines() if "|" in line}
    assert "cli" in imported and "typer" in imported  # the import log was read
    assert not {"torch", "timm"} & imported
    probe = ("import sys, runpy; sys.argv = ['ersm-eval', 'report', sys.argv[1], '--out', sys.argv[2]]\n"
             "try:\n    runpy.run_module('cli.main', run_name='__main__')\nexcept SystemExit as end:\n"
             "    assert not end.code, end.code\n"
             "print('loaded:', sorted(m for m in ('torch', 'timm', 'reports', 'matplotlib') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe, str(run), str(tmp_path / "out" / "report.html")],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded: ['matplotlib', 'reports']" in result.stdout  # the report was built, torch never imported
    assert (tmp_path / "out" / "report.html").is_file()
