"""`ersm-eval sparsity`: tables, maps.npz, non-ERSM models and datasets without masks."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.schema import TABLES

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _run(*args):
    return runner.invoke(app, ["sparsity", *map(str, args)])


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("sp") / "run"
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "12", "--out", out, "-b", "5",
                  "--gallery-indices", "11", "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_every_table_with_the_schema(run_dir, tiny_checkpoint):
    out, output = run_dir
    for name in ("sparsity_summary.csv", "keep_histogram.csv", "per_class_keep.csv", "per_image.csv"):
        table = pd.read_csv(out / name, keep_default_na=False, na_values=["", "nan"])
        assert list(table.columns[: len(TABLES[name])]) == TABLES[name], name
        assert (table["checkpoint"] == tiny_checkpoint.stem).all()
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    maps = set(summary["map"])
    assert maps == {"", "keep", "energy", "cam"}
    for m in ("keep", "energy", "cam"):
        assert {"box_accuracy", "mass_in_object", "iou"} <= set(summary.loc[summary["map"] == m, "metric"])
    per_image = pd.read_csv(out / "per_image.csv", keep_default_na=False)
    assert per_image["index"].tolist() == list(range(12))
    assert set(per_image["failure"]) <= {"", "focused", "distracted", "high_confidence"}
    info = json.loads((out / "summary.json").read_text())
    assert info["class_names"] and info["label"] == tiny_checkpoint.stem
    assert info["sparsity"]["maps"] == ["keep", "energy", "cam"] and 11 in info["sparsity"]["gallery_indices"]
    assert "localization" not in " ".join(info["notes"])
    assert "Localization" in output and "mean_keep" in output


def test_maps_npz_holds_the_gallery(run_dir):
    out, _ = run_dir
    info = json.loads((out / "summary.json").read_text())
    with np.load(out / "maps.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == {"index", "image", "label", "prediction", "keep", "energy", "cam", "mask"}
    n = len(arrays["index"])
    assert arrays["index"].tolist() == info["sparsity"]["gallery_indices"] and arrays["index"][:8].tolist() == list(range(8))
    assert arrays["image"].shape == (n, 64, 64, 3) and arrays["image"].dtype == np.uint8
    assert arrays["keep"].shape == arrays["cam"].shape == (n, 4, 4) and arrays["mask"].shape == (n, 64, 64)


def test_baseline_gets_cam_localization_only(tiny_baseline_checkpoint, tmp_path):
    out = tmp_path / "run"
    result = _run(tiny_baseline_checkpoint, "--dataset", "synthetic", "--limit", "6", "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "no keep map" in _text(result)
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    assert set(summary["map"]) == {"", "cam"} and "box_accuracy" in set(summary["metric"])
    assert not (out / "keep_histogram.csv").exists()
    with np.load(out / "maps.npz") as npz:
        assert "keep" not in npz.files and "cam" in npz.files


def test_dataset_without_masks_says_so_and_computes_the_rest(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for k in range(10):
            (root / split / f"c{k}").mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / split / f"c{k}" / "x.png")
    out = tmp_path / "run"
    result = _run(tiny_checkpoint, "--dataset", "imagefolder", "--data-root", root, "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "localization skipped" in _text(result) and "no object masks or boxes" in _text(result)
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    assert {"mean_keep", "n_components", "neighbour_agreement", "accuracy"} <= set(summary["metric"])
    assert not summary["metric"].isin(["box_accuracy", "iou", "mass_in_object"]).any()
    with np.load(out / "maps.npz") as npz:
        assert "mask" not in npz.files
    assert any("localization skipped" in n for n in json.loads((out / "summary.json").read_text())["notes"])


def test_bad_inputs(tiny_checkpoint, run_dir, tmp_path):
    out, _ = run_dir
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", out, "--quiet")
    assert result.exit_code == 2 and "--overwrite" in _text(result)
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", tmp_path / "x", "--gallery-indices", "a", "--quiet")
    assert result.exit_code == 2 and "--gallery-indices" in _text(result)
    result = _run(tiny_checkpoint, "--dataset", "nosuch", "--out", tmp_path / "y", "--quiet")
    assert result.exit_code == 2 and "synthetic" in _text(result)
