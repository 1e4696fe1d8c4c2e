"""``ersm-eval train`` through typer's CliRunner."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from ersm_core.checkpoint import load_checkpoint
from ersm_core.training import HISTORY_COLUMNS

runner = CliRunner()

# 32 px compact_cnn (2×2 map), 48 training and 16 test images, one epoch: a few seconds
QUICK = ["--dataset", "synthetic", "--image-size", "32", "--n-train", "48", "--n-test", "16",
         "--batch-size", "16", "--epochs", "1", "--device", "cpu"]


def _train(*args):
    return runner.invoke(app, ["train", *QUICK, *args])


def test_train_writes_checkpoint_and_history(tmp_path):
    out = tmp_path / "model.pt"
    result = _train("--variant", "ersm_full", "--alpha", "0.01", "--pairwise-reduce", "mean", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "mean keep" in result.output and "model.pt" in result.output
    loaded = load_checkpoint(out)
    assert loaded.config.variant == "ersm_full" and loaded.config.image_size == 32
    assert loaded.config.alpha == 0.01 and loaded.config.pairwise_reduce == "mean"
    assert loaded.config.num_classes == 10 and len(loaded.class_names) == 10
    assert loaded.provenance["dataset_options"] == {"n_train": 48, "n_test": 16}
    history = pd.read_csv(tmp_path / "model.history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 1


def test_progress_bar_run(tmp_path):
    result = _train("--variant", "baseline", "--out", str(tmp_path / "b.pt"))
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "mean keep -" in result.output


def test_existing_checkpoint_needs_overwrite(tmp_path):
    out = tmp_path / "model.pt"
    out.write_bytes(b"precious")
    result = _train("--variant", "baseline", "--out", str(out))
    assert result.exit_code != 0
    assert "already exists" in result.output and "--overwrite" in result.output
    assert out.read_bytes() == b"precious"
    result = _train("--variant", "baseline", "--out", str(out), "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).config.variant == "baseline"


def test_unknown_variant_lists_valid_ones(tmp_path):
    result = _train("--variant", "ersm_triple", "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 2
    for name in ("baseline", "dropblock", "spatial_dropout", "l0", "ersm_unary", "ersm_full"):
        assert name in result.output
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--patch-size", "3"], "patch size 3 does not divide the 2x2 feature map"),
        (["--dataset", "pets", "--data-root", "/nonexistent"], "only apply to the synthetic dataset"),
        (["--variant", "ersm_full", "--beta", "0"], "ersm_unary for beta = 0"),
        (["--pretrained"], "compact_cnn has no pretrained weights"),
        (["--lr", "0"], "lr must be a positive number"),
    ],
)
def test_user_errors_give_one_message_and_exit_2(tmp_path, args, message):
    result = _train(*args, "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.pt").exists()


def test_missing_dataset_folder(tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "imagefolder", "--data-root", str(tmp_path / "none"),
                                 "--epochs", "1", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "Error" in result.output and "Traceback" not in result.output


def test_top_level_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "train" in result.output and "Train a model variant" in result.output


def test_train_help_documents_every_option():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--variant", "--pairwise-reduce", "--bias", "--freeze-backbone", "--weights",
                   "--spurious", "--limit", "--overwrite", "--l0-lambda", "--init-keep"):
        assert option in result.output
