"""`ersm-eval report` reads run folders as data: an edited or damaged summary.json, CSV or maps.npz
is refused with one line naming the file and what is wrong (exit 2, no traceback), and no file's
claim sizes memory before it is checked."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest

from tests.safety.inputs import one_line_error, run_cli, untouched

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint):
    """A deletion and a sparsity folder written by the CLI (8 synthetic images)."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--dataset", "synthetic", "--limit", "8", "--no-report", "--quiet"]
    for command, extra in (("deletion", ["--steps", "4", "--seeds", "0"]), ("sparsity", [])):
        result = run_cli(command, tiny_checkpoint, *common, *extra, "--out", root / command)
        assert result.exit_code == 0, result.output
    return root


def _copy(runs, tmp_path, command: str):
    return shutil.copytree(runs / command, tmp_path / command)


def _report(folder, tmp_path, *fragments: str) -> str:
    with untouched(folder):
        result = run_cli("report", folder, "--out", tmp_path / "r" / "x.html")
    line = one_line_error(result, *fragments)
    assert not (tmp_path / "r" / "x.html").exists()
    return line


def test_the_untouched_folders_give_a_report(runs, tmp_path):
    result = run_cli("report", runs / "deletion", runs / "sparsity", "--out", tmp_path / "r" / "x.html")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output


# -- summary.json (item 25) ---------------------------------------------------------------------
_DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("edit, fragment", [
    (lambda s: s.replace('"deletion_curves.csv": ', '"deletion_curves.csv": Infinity, "was": ', 1), "Infinity"),
    (lambda s: s.replace('"deletion_curves.csv": ', '"deletion_curves.csv": NaN, "was": ', 1), "tables.deletion_curves.csv"),
    (lambda s: s.replace('"deletion_curves.csv": ', '"deletion_curves.csv": 1e999, "was": ', 1), "out of range"),
    (lambda s: s.replace('"deletion_curves.csv": ', '"deletion_curves.csv": -3, "was": ', 1), "tables.deletion_curves.csv"),
    (lambda s: s.replace('"n_images": ', '"n_images": ' + "9" * 5000 + ', "was": ', 1), "out of range"),
    (lambda s: s.rstrip()[:-1] + ', "x": ' + _DEEP + "}\n", "nested"),
    (lambda s: s.rstrip()[:-1] + ', "x": ' + "[" * 500 + "]" * 500 + "}\n", "nested"),
    (lambda s: s.replace('"label": ', '"label": {"a": 1}, "was": ', 1), "'label'"),
    (lambda s: s.replace('"n_classes": ', '"n_classes_was": ', 1), "chance_test.n_classes"),
    (lambda s: s.replace('"tables": ', '"tables": 7, "was": ', 1), "'tables'"),
    (lambda s: "[1, 2]", "JSON object"),
], ids=["infinity", "nan-count", "float-overflow", "negative-count", "5000-digits", "200000-deep", "500-deep",
        "label-dict", "chance-test-key", "tables-number", "not-an-object"])
def test_an_edited_summary_is_refused_naming_the_file(runs, tmp_path, edit, fragment):
    folder = _copy(runs, tmp_path, "deletion")
    path = folder / "summary.json"
    path.write_text(edit(path.read_text()))
    _report(folder, tmp_path, "summary.json", fragment)


# -- maps.npz (item 26) -------------------------------------------------------------------------
def _rewrite_maps(folder, change):
    path = folder / "maps.npz"
    with np.load(path) as npz:
        maps = {k: npz[k] for k in npz.files}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in maps.items():
            zf.writestr(f"{key}.npy", change(key, value))


def _npy(value) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def _huge_keep(key, value):
    if key != "keep":
        return _npy(value)
    buf = io.BytesIO()  # a header claiming 1.6 TB, followed by the real 512 bytes
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**11, 2, 2)})
    buf.write(value.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("change, fragment", [
    (_huge_keep, "'keep' declares shape [100000000000, 2, 2]"),
    (lambda k, v: _npy(np.zeros((len(v), 3, 3), np.float32) if k == "keep" else v), "token grid"),
    (lambda k, v: _npy(v.astype(np.complex64) if k == "cam" else v), "'cam' has dtype complex64"),
    (lambda k, v: _npy(v.astype(np.float64) if k == "label" else v), "'label' has dtype float64"),
    (lambda k, v: _npy(np.where(np.arange(v.size).reshape(v.shape) == 0, np.nan, v).astype(v.dtype) if k == "keep" else v),
     "'keep' holds NaN"),
    (lambda k, v: _npy(np.full_like(v, np.inf) if k == "energy" else v), "'energy' holds NaN or infinite"),
], ids=["huge-header", "wrong-grid", "complex", "float-labels", "nan-map", "inf-map"])
def test_a_damaged_maps_file_is_refused_before_it_is_loaded(runs, tmp_path, change, fragment):
    folder = _copy(runs, tmp_path, "sparsity")
    _rewrite_maps(folder, change)
    _report(folder, tmp_path, "maps.npz", fragment)


# -- CSV value ranges (item 27) -----------------------------------------------------------------
def _set(folder, name: str, column: str, value: str, row: int = 1) -> None:
    path = folder / name
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    fields = lines[row].rstrip("\n").split(",")
    fields[header.index(column)] = value
    lines[row] = ",".join(fields) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("command, name, column, value, fragment", [
    ("deletion", "deletion_curves.csv", "accuracy", "inf", "must be a number in [0, 1], found 'inf' (data row 3)"),
    ("deletion", "deletion_curves.csv", "accuracy", "1.5", "must be a number in [0, 1]"),
    ("deletion", "deletion_curves.csv", "k", "-5", "column 'k' must be an integer in [0, 16], found '-5'"),
    ("deletion", "deletion_curves.csv", "k", "2.5", "column 'k'"),
    ("deletion", "deletion_curves.csv", "k", "17", "column 'k' must be an integer in [0, 16]"),
    ("deletion", "deletion_summary.csv", "sg", "1e308", "column 'sg' must be a number in [-1, 1]"),
    ("deletion", "deletion_summary.csv", "auc_diff_lerf_ci_low", "-inf", "column 'auc_diff_lerf_ci_low'"),
    ("deletion", "deletion_tests.csv", "p_value", "2", "column 'p_value'"),
    ("deletion", "energy_diagnostics.csv", "value", "inf", "column 'value' must be a finite number"),
    ("sparsity", "per_image.csv", "confidence", "-0.5", "column 'confidence'"),
    ("sparsity", "per_image.csv", "label", "-1", "column 'label'"),
    ("sparsity", "sparsity_summary.csv", "value", "1e999", "column 'value' must be a finite number"),
], ids=lambda v: str(v)[:12])
def test_out_of_range_csv_values_are_refused(runs, tmp_path, command, name, column, value, fragment):
    folder = _copy(runs, tmp_path, command)
    _set(folder, name, column, value, row=3)
    _report(folder, tmp_path, name, fragment)
