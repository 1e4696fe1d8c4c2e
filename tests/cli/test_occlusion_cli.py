"""`ersm-eval occlusion`: outputs for several checkpoints, skipped patterns and bad inputs."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from cli.occlusion import checkpoint_labels
from ersm_eval.schema import TABLES

runner = CliRunner()
FAST = ["--fills", "gray,noise", "--patterns", "random_squares,center,object,background", "--severities", "0,0.3,0.6",
        "--no-report", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _run(*args):
    return runner.invoke(app, ["occlusion", *map(str, args)])


def _imagefolder(root, n_classes=10):
    """root/test/<class>/<image>: a dataset without masks or boxes, with the synthetic class count."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k in range(n_classes):
            folder = root / split / f"class{k:02d}"
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    return root


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("occ") / "run"
    result = _run(tiny_checkpoint, tiny_baseline_checkpoint, "--dataset", "synthetic", "--limit", "6", "--seeds", "0,1",
                  "--out", out, "-b", "4", *FAST)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_both_tables_for_every_checkpoint(run_dir, tiny_checkpoint, tiny_baseline_checkpoint):
    out, output = run_dir
    curves = pd.read_csv(out / "occlusion.csv")
    summary = pd.read_csv(out / "occlusion_summary.csv")
    assert list(curves.columns[: len(TABLES["occlusion.csv"])]) == TABLES["occlusion.csv"]
    assert list(summary.columns[: len(TABLES["occlusion_summary.csv"])]) == TABLES["occlusion_summary.csv"]
    labels = [tiny_checkpoint.stem, tiny_baseline_checkpoint.stem]
    assert list(pd.unique(curves["checkpoint"])) == labels
    assert set(curves["fill"]) == {"gray", "noise"} and sorted(curves["severity"].unique()) == [0.0, 0.3, 0.6]
    assert (curves["n"] == 12).all()  # 6 images × 2 seeds
    assert summary.loc[summary["checkpoint"] == labels[0], "diff_auc_to_first"].isna().all()
    assert summary.loc[summary["checkpoint"] == labels[1], "diff_auc_to_first"].notna().all()
    info = json.loads((out / "summary.json").read_text())
    assert info["labels"] == labels and len(info["checkpoints"]) == 2
    assert info["settings"]["seeds"] == [0, 1] and info["class_names"]
    assert info["checkpoints"][0]["checkpoint_sha256"] and "versions" in info
    assert not (out / "report.html").exists()
    assert "AUC" in output


def test_same_occluders_give_the_same_numbers_when_run_alone(run_dir, tiny_baseline_checkpoint, tmp_path):
    out, _ = run_dir
    alone = tmp_path / "alone"
    result = _run(tiny_baseline_checkpoint, "--dataset", "synthetic", "--limit", "6", "--seeds", "0,1", "--out", alone,
                  "-b", "5", *FAST)
    assert result.exit_code == 0, result.output
    both = pd.read_csv(out / "occlusion.csv")
    both = both[both["checkpoint"] == tiny_baseline_checkpoint.stem].reset_index(drop=True)
    single = pd.read_csv(alone / "occlusion.csv")
    pd.testing.assert_series_equal(both["accuracy"], single["accuracy"])
    np.testing.assert_allclose(both["mean_true_prob"], single["mean_true_prob"], rtol=1e-4)


def test_dataset_without_masks_skips_mask_patterns(tiny_checkpoint, tmp_path):
    root = _imagefolder(tmp_path / "folder")
    import torch

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["class_names"] = [f"class{k:02d}" for k in range(10)]  # class names must match the folders'
    tiny_checkpoint = tmp_path / "renamed.pt"
    torch.save(payload, tiny_checkpoint)
    out = tmp_path / "run"
    result = _run(tiny_checkpoint, "--dataset", "imagefolder", "--data-root", root, "--out", out,
                  "--patterns", "center,object", "--severities", "0.5", "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "object" in _text(result) and "no object masks or boxes" in _text(result)
    curves = pd.read_csv(out / "occlusion.csv")
    assert set(curves["pattern"]) == {"center"}
    assert any("skipped" in n for n in json.loads((out / "summary.json").read_text())["notes"])
    result = _run(tiny_checkpoint, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "other",
                  "--patterns", "object", "--quiet")
    assert result.exit_code == 2 and "no occlusion pattern can run" in _text(result)


def test_existing_output_is_refused_before_any_work(run_dir, tiny_checkpoint):
    out, _ = run_dir
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", out, "--quiet")
    assert result.exit_code == 2 and "--overwrite" in _text(result)


@pytest.mark.parametrize("args,message", [
    (["--fills", "pink"], "valid names"),
    (["--patterns", "stripes"], "random_squares"),
    (["--severities", "0.2,abc"], "--severities"),
    (["--severities", "1.5"], r"[0, 1]"),
    (["--label", "a,b"], "2 names for 1 checkpoints"),
])
def test_bad_options_say_what_is_wrong(tiny_checkpoint, tmp_path, args, message):
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", tmp_path / "x", *args, "--quiet")
    assert result.exit_code == 2, result.output
    assert message in _text(result)
    assert not (tmp_path / "x").exists()


def test_missing_checkpoint_is_one_message(tmp_path):
    result = _run(tmp_path / "nope.pt", "--dataset", "synthetic", "--out", tmp_path / "x", "--quiet")
    assert result.exit_code == 2 and "checkpoint not found" in _text(result)


def test_labels_default_to_stems_and_disambiguate(tmp_path):
    assert checkpoint_labels([tmp_path / "a" / "m.pt", tmp_path / "b" / "n.pt"], None) == ["m", "n"]
    assert checkpoint_labels([tmp_path / "a" / "m.pt", tmp_path / "b" / "m.pt"], None) == ["a/m", "b/m"]
    assert checkpoint_labels([tmp_path / "m.pt", tmp_path / "n.pt"], ["x", "y"]) == ["x", "y"]
    assert checkpoint_labels([tmp_path / "m.pt", tmp_path / "n.pt"], ["x,y"]) == ["x", "y"]
