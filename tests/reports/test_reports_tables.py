"""Loading and checking run folders (reports.tables), and the gallery's numpy upsampling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ersm_core.errors import ERSMError
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON, TABLES
from reports import ReportError, load_run
from reports.figures_gallery import upsample_bilinear
from reports.tables import series_labels, stack


def test_load_run_reads_every_table(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run"))
    assert set(run.tables) == set(TABLES) - {"map_randomization.csv"}  # the fake run has no randomization check
    assert run.label == "ERSM-Full"
    assert run.class_names[0] == "albatross"
    assert run.variant == "ersm_full" and not run.is_baseline
    assert run.maps is not None and {"index", "image", "keep", "mask"} <= set(run.maps)
    curves = run.table("deletion_curves.csv")
    assert curves["accuracy"].dtype == float
    assert run.table("per_image.csv")["correct"].dtype == bool
    # '' stays text in text columns (no map / no failure)
    assert "" in set(run.table("sparsity_summary.csv")["map"])


def test_label_falls_back_to_folder_name(tmp_path, run_writer):
    folder = run_writer(tmp_path / "my-run", kinds=("occlusion",))
    summary = json.loads((folder / SUMMARY_JSON).read_text())
    summary["label"] = ""
    (folder / SUMMARY_JSON).write_text(json.dumps(summary))
    assert load_run(folder).label == "my-run"
    assert load_run(folder, label="given").label == "given"


def test_only_present_tables_are_loaded(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run", kinds=("occlusion",)))
    assert set(run.tables) == {"occlusion.csv", "occlusion_summary.csv"}
    assert run.maps is None


def test_missing_folder(tmp_path):
    with pytest.raises(ReportError, match="run folder not found"):
        load_run(tmp_path / "nowhere")


def test_folder_without_tables_says_so(tmp_path, run_writer):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReportError, match="has no summary.json; expected the folder an evaluation wrote") as err:
        load_run(tmp_path)
    assert "deletion_curves.csv" in str(err.value)
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    for name in ("occlusion.csv", "occlusion_summary.csv"):
        (folder / name).unlink()
    summary = json.loads((folder / SUMMARY_JSON).read_text())
    (folder / SUMMARY_JSON).write_text(json.dumps(dict(summary, tables={})))
    with pytest.raises(ReportError, match="holds none of the tables a report is built from"):
        load_run(folder)


def test_report_error_is_an_ersm_error():
    assert issubclass(ReportError, ERSMError)


def test_missing_column_names_file_and_column(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    path = folder / "deletion_curves.csv"
    pd.read_csv(path).drop(columns=["ci_low"]).to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"deletion_curves\.csv.*missing required column 'ci_low'"):
        load_run(folder)


def test_unparsable_csv_names_file(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    (folder / "occlusion_summary.csv").write_text("checkpoint,fill\na,b\nc,d,e,f,g\n")
    with pytest.raises(ReportError, match=r"occlusion_summary\.csv: not a readable CSV"):
        load_run(folder)


def test_non_numeric_value_names_file_and_column(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    path = folder / "occlusion.csv"
    table = pd.read_csv(path)
    table["accuracy"] = table["accuracy"].astype(object)
    table.loc[3, "accuracy"] = "high"
    table.to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"occlusion\.csv: column 'accuracy' must be numeric, found 'high' \(data row 4\)"):
        load_run(folder)


def test_bad_boolean_names_column(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    path = folder / "per_image.csv"
    table = pd.read_csv(path)
    table["correct"] = table["correct"].astype(object)
    table.loc[0, "correct"] = "maybe"
    table.to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"per_image\.csv: column 'correct' must be true/false"):
        load_run(folder)


def test_malformed_summary_json(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    (folder / SUMMARY_JSON).write_text("{not json")
    with pytest.raises(ReportError, match=r"summary\.json: not valid JSON"):
        load_run(folder)


def test_maps_missing_key_and_bad_shape(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    with np.load(folder / MAPS_NPZ) as npz:
        maps = dict(npz)
    np.savez(folder / MAPS_NPZ, **{k: v for k, v in maps.items() if k != "prediction"})
    with pytest.raises(ReportError, match=r"maps\.npz: missing array 'prediction'"):
        load_run(folder)
    np.savez(folder / MAPS_NPZ, **dict(maps, keep=maps["keep"][:2]))
    with pytest.raises(ReportError, match=r"maps\.npz: array 'keep' must hold"):
        load_run(folder)


def test_optional_maps_may_be_absent(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    with np.load(folder / MAPS_NPZ) as npz:
        maps = {k: npz[k] for k in ("index", "image", "label", "prediction")}
    np.savez(folder / MAPS_NPZ, **maps)
    assert set(load_run(folder).maps) == {"index", "image", "label", "prediction"}


def test_series_labels_and_stack(tmp_path, run_writer):
    one = load_run(run_writer(tmp_path / "a", kinds=("occlusion",), occlusion_checkpoints=("x/a.pt", "x/b.pt")))
    two = load_run(run_writer(tmp_path / "b", label="Baseline", variant="baseline", kinds=("occlusion",)))
    labels = series_labels([one])
    assert list(labels.values()) == ["a", "b"]  # one run: checkpoint stems
    labels = series_labels([one, two])
    assert list(labels.values()) == ["a", "b", "Baseline"]
    stacked = stack([one, two], "occlusion.csv", labels)
    assert list(stacked.columns[:2]) == ["run", "series"]
    assert set(stacked["series"]) == set(labels.values())
    assert stack([one], "per_image.csv").empty


def test_upsample_bilinear_matches_torch():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(upsample_bilinear(maps, 32), want.numpy()[:, 0], atol=1e-5)


def test_a_csv_cut_mid_line_is_refused(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    path = folder / "deletion_curves.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the last row loses its final fields, no line break
    with pytest.raises(ReportError, match="deletion_curves.csv: the file does not end with a line break"):
        load_run(folder)
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:-2]) + ",".join(lines[-2].split(",")[:4]) + "\n" + lines[-1])
    with pytest.raises(ReportError, match=r"line \d+ has 4 fields where the header has 11"):
        load_run(folder)


def test_row_counts_are_checked_against_summary_json(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    recorded = json.loads((folder / SUMMARY_JSON).read_text())["tables"]
    assert recorded["deletion_curves.csv"] == len(pd.read_csv(folder / "deletion_curves.csv"))
    lines = (folder / "deletion_curves.csv").read_text().splitlines(keepends=True)
    (folder / "deletion_curves.csv").write_text("".join(lines[:-3]))  # three whole rows gone
    n = recorded["deletion_curves.csv"]
    with pytest.raises(ReportError, match=f"{n - 3} data rows, but the run recorded {n} in summary.json"):
        load_run(folder)


def test_a_listed_table_that_is_gone_is_refused(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    load_run(folder)
    (folder / "deletion_tests.csv").unlink()
    with pytest.raises(ReportError, match="summary.json lists deletion_tests.csv but the file is missing"):
        load_run(folder)


@pytest.mark.parametrize("version", [None, 1])
def test_a_folder_of_an_older_schema_is_one_message_to_rerun(tmp_path, run_writer, version):
    folder = run_writer(tmp_path / "run", kinds=("deletion",), legacy=True)
    if version is not None:
        summary = json.loads((folder / SUMMARY_JSON).read_text())
        (folder / SUMMARY_JSON).write_text(json.dumps(dict(summary, schema_version=version)))
    written = "no schema version" if version is None else f"schema version {version}"
    with pytest.raises(ReportError, match=rf"written by an older ersm-eval \({written}; this version reads version 2\); "
                                          r"re-run the evaluation that wrote run"):
        load_run(folder)


def test_a_folder_without_summary_json_is_refused(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    (folder / SUMMARY_JSON).unlink()
    with pytest.raises(ReportError, match="has no summary.json; it was written by an older ersm-eval or edited, re-run"):
        load_run(folder)


def test_a_table_without_the_verdict_columns_is_refused(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    path = folder / "deletion_summary.csv"
    pd.read_csv(path).drop(columns=["sg", "verdict"]).to_csv(path, index=False)
    with pytest.raises(ReportError, match=r"missing required columns 'sg', 'verdict'.*older ersm-eval or edited; re-run"):
        load_run(folder)


def test_a_summary_off_the_schema_names_the_problem(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("occlusion",))
    summary = json.loads((folder / SUMMARY_JSON).read_text())
    (folder / SUMMARY_JSON).write_text(json.dumps(dict(summary, n_images="many")))
    with pytest.raises(ReportError, match=r"field 'n_images' does not follow the summary.json schema \(n_images should be integer"):
        load_run(folder)


def test_new_columns_are_numeric(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run", kinds=("deletion",)))
    summary = run.table("deletion_summary.csv").set_index("ranking")
    assert summary["sg"].dtype == float and summary["auc_diff_morf"].dtype == float
    assert summary["steps_above_random"].dtype == float
    assert summary.loc["energy", "verdict"] == "supports" and summary.loc["random", "verdict"] == ""


def test_partial_folder_names_are_cleaned():
    from reports.tables import clean_path

    assert clean_path("/runs/.deletion-a.k2j_3x.partial/summary.json") == "/runs/deletion-a/summary.json"
    assert clean_path(".cmp.ab12.partial") == "cmp"
    assert clean_path("runs/a.partial") == "runs/a.partial"
