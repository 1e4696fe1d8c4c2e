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


def _train(*args, env=None):
    return runner.invoke(app, ["train", *QUICK, *args], env=env)


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
    assert not (tmp_path / "model.state.pt").exists()  # a completed run leaves no resume state


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
    assert result.exit_code != 0 and "not an ersm-eval checkpoint" in result.output  # --overwrite replaces checkpoints only
    assert out.read_bytes() == b"precious"
    import torch

    torch.save({"format": "ersm-eval checkpoint"}, out)  # an (old) ersm-eval checkpoint may be replaced
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
        (["--image-size", "64", "--patch-size", "3"], "patch size 3 does not divide the 4x4 feature map"),
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
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--variant", "--pairwise-reduce", "--bias", "--freeze-backbone", "--weights",
                   "--spurious", "--limit", "--overwrite", "--l0-lambda", "--init-keep"):
        assert option in result.output


def test_new_options_are_documented_and_interpolations_match_the_library():
    from cli.train import Interpolation
    from ersm_core.data import INTERPOLATIONS

    assert tuple(i.value for i in Interpolation) == INTERPOLATIONS
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    for option in ("--feature-cache", "--no-feature-cache", "--feature-views", "--val-fraction", "--crop-pct",
                   "--interpolation", "--subset-seed", "--augment", "--resume", "--feature-cache-dir"):
        assert option in result.output


def test_option_bounds_and_defaults_come_from_the_config(tmp_path, monkeypatch):
    """cli.train keeps no copy: moving a bound or a default in ersm_core.config moves the command's."""
    import typer.main

    from ersm_core import config

    monkeypatch.setitem(config.MAX_VALUES, "lr", 0.5)
    monkeypatch.setitem(config.MAX_VALUES, "patch_size", 7)
    result = _train("--lr", "0.6", "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 2 and "--lr must be at most 0.5, got 0.6" in result.output
    result = _train("--patch-size", "8", "--out", str(tmp_path / "m.pt"))
    assert result.exit_code == 2 and "--patch-size must be at most 7, got 8" in result.output
    assert not (tmp_path / "m.pt").exists()
    command = typer.main.get_command(app).commands["train"]
    defaults = {p.name: p.default for p in command.params}
    assert defaults["alpha"] == config.ModelConfig.__dataclass_fields__["alpha"].default == 1e-3
    assert defaults["lr"] == config.TrainConfig.__dataclass_fields__["lr"].default
    assert defaults["feature_views"] == config.TrainConfig.__dataclass_fields__["feature_views"].default


def test_config_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, ersm_core.config, ersm_core.plain, ersm_core.feature_key, cli.train; "
            "print(sorted(m for m in ('torch', 'numpy', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_log_without_a_terminal_has_eta_lines_and_validation(tmp_path):
    out = tmp_path / "m.pt"
    result = _train("--variant", "ersm_full", "--epochs", "2", "--freeze-backbone", "--out", str(out),
                    env={"ERSM_EVAL_PROGRESS_SECONDS": "1000"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("backbone features, train (once): 43/43 images (100%)") for line in lines)
    ends = [line for line in lines if line.startswith("epoch 2/2: 4/4 batches (100%)")]
    assert ends and "ETA 0:00:00" in ends[-1] and "run ETA" in ends[-1] and "val " in ends[-1]
    assert any(line.startswith("test split (once, final model): 1/1 batches") for line in lines)
    history = pd.read_csv(tmp_path / "m.history.csv")
    assert history["test_acc"].isna().tolist() == [True, False] and history["val_acc"].notna().all()
    prov = load_checkpoint(out).provenance
    assert prov["feature_cache"]["used"] is True and prov["val_size"] == 5 and prov["train_size"] == 43


def test_ctrl_c_after_epoch_two_keeps_the_history(tmp_path, monkeypatch):
    import ersm_core.training.loop as training

    calls = {"n": 0}
    real = training.evaluate

    def interrupt_third_validation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", interrupt_third_validation)
    out = tmp_path / "m.pt"
    result = _train("--variant", "baseline", "--epochs", "5", "--out", str(out), "--quiet")
    assert result.exit_code == 130
    assert "no checkpoint was written" in result.output and "m.history.csv" in " ".join(result.output.split())
    assert not out.exists()
    assert pd.read_csv(tmp_path / "m.history.csv")["epoch"].tolist() == [1, 2]
    # a second run beside that history refuses to replace it silently
    again = _train("--variant", "baseline", "--out", str(out), "--quiet")
    assert again.exit_code == 2 and "history of another run" in " ".join(again.output.split())


def test_sigterm_of_a_headless_run_keeps_the_history_and_says_so(tmp_path):
    """``kill`` of a ``nohup`` run (whose Ctrl-C the shell ignores): exit 143, one message, history kept."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.pt"
    history = tmp_path / "m.history.csv"
    exe = shutil.which("ersm-eval", path=os.path.dirname(sys.executable))
    cmd = [exe, "train", *QUICK[:-4], "--epochs", "200", "--variant", "baseline", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ERSM_EVAL_PROGRESS_SECONDS": "1"}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if history.exists() and len(pd.read_csv(history)) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("Stopped (SIGTERM): no checkpoint was written; the finished epochs are in"), last
    assert not out.exists()
    assert len(pd.read_csv(history)) >= 2
    assert "--resume" in last and (tmp_path / "m.state.pt").exists()  # SIGTERM keeps the resume state
    assert "ETA" in output  # headless progress lines were written while it ran


def test_timm_backbone_records_timms_own_data_config(tmp_path):
    from timm import create_model
    from timm.data import resolve_model_data_config

    expected = resolve_model_data_config(create_model("tf_efficientnet_lite0", pretrained=False))
    out = tmp_path / "lite0.pt"
    result = runner.invoke(app, ["train", "--backbone", "tf_efficientnet_lite0", "--freeze-backbone", "--variant", "baseline",
                                 "--dataset", "synthetic", "--n-train", "10", "--n-test", "4", "--num-classes", "2",
                                 "--batch-size", "5", "--epochs", "1", "--device", "cpu", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    config = loaded.config
    assert config.image_size == expected["input_size"][-1] == 224
    assert config.crop_pct == expected["crop_pct"] and config.interpolation == expected["interpolation"] == "bicubic"
    assert config.mean == tuple(expected["mean"]) and config.std == tuple(expected["std"])
    data_config = loaded.provenance["data_config"]
    assert data_config["source"] == "timm pretrained config of tf_efficientnet_lite0"
    assert (data_config["image_size"], data_config["crop_pct"], data_config["interpolation"]) == (224, 0.875, "bicubic")
    assert loaded.provenance["transform"]["eval"]["interpolation"] == "bicubic"


def test_authors_crop_setting_is_recorded(tmp_path):
    out = tmp_path / "m.pt"
    result = _train("--variant", "baseline", "--crop-pct", "authors", "--interpolation", "bicubic", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    assert loaded.config.crop_pct == pytest.approx(1 / 1.14) and loaded.config.interpolation == "bicubic"
    assert "crop_pct 'authors'" in loaded.provenance["data_config"]["source"]
    bad = _train("--crop-pct", "paper", "--out", str(tmp_path / "x.pt"))
    assert bad.exit_code == 2 and "authors" in bad.output


@pytest.mark.parametrize("where", ["a_file/m.pt", "a_file/missing/m.pt"])
def test_out_under_a_file_is_refused_before_training(tmp_path, where):
    import time

    (tmp_path / "a_file").write_text("x")
    started = time.monotonic()
    result = _train("--variant", "baseline", "--epochs", "50", "--out", str(tmp_path / where), "--quiet")
    assert result.exit_code == 2, result.output
    assert "a_file is a file, not a folder" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert time.monotonic() - started < 20  # refused at once, not after 50 epochs
    assert (tmp_path / "a_file").read_text() == "x"


def test_missing_out_folders_are_made_when_they_can_be(tmp_path):
    """As the evaluations do: folders that do not exist yet are created, under a folder that takes files."""
    result = _train("--variant", "baseline", "--out", str(tmp_path / "new" / "deeper" / "m.pt"), "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "deeper" / "m.pt").is_file()


def test_read_only_out_folder_is_refused_before_training(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for out in (folder / "m.pt", folder / "missing" / "m.pt"):  # also a folder that would have to be made there
            result = _train("--variant", "baseline", "--epochs", "50", "--out", str(out), "--quiet")
            assert result.exit_code == 2 and "cannot write --out" in result.output, result.output
            assert "Permission denied" in result.output
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_check_writable_finds_a_full_disk(tmp_path, monkeypatch):
    """A folder where no byte can be written (full disk, read-only mount) is named before any work."""
    import errno
    import os as os_module

    from ersm_core.errors import ConfigError
    from ersm_core.training import check_writable

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os_module, "write", full)
    with pytest.raises(ConfigError, match=r"cannot write --out .*m.pt: No space left on device in"):
        check_writable(tmp_path / "m.pt")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def _cli(*args):
    import os
    import shutil
    import sys

    exe = shutil.which("ersm-eval", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ERSM_EVAL_PROGRESS_SECONDS": "1000"}
    return [exe, "train", *args], env


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 after epoch 2 of 4, then --resume: the same history and weights as a run never stopped.

    Three processes (about 30 s each on a busy machine); the cached-feature path is resumed in
    process by tests/ersm_core/test_resume.py.
    """
    import signal
    import subprocess
    import time

    import torch

    options = ["--dataset", "synthetic", "--image-size", "32", "--n-train", "160", "--n-test", "16", "--epochs", "4",
               "--batch-size", "8", "--device", "cpu", "--quiet"]
    cmd, env = _cli(*options, "--out", str(tmp_path / "whole.pt"))
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    out, history, state = tmp_path / "m.pt", tmp_path / "m.history.csv", tmp_path / "m.state.pt"
    cmd, env = _cli(*options, "--out", str(out))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if history.exists() and len(pd.read_csv(history)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and state.exists()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)  # without --resume: refused
    assert again.returncode == 2 and "--resume" in again.stdout + again.stderr
    cmd, env = _cli(*options, "--out", str(out), "--resume")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not state.exists()  # removed once the checkpoint is written
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole.history.csv")[columns], pd.read_csv(history)[columns])
    whole, resumed = load_checkpoint(tmp_path / "whole.pt").model.state_dict(), load_checkpoint(out).model.state_dict()
    for name in whole:
        torch.testing.assert_close(whole[name], resumed[name], rtol=0, atol=0, msg=name)


def test_feature_cache_dir_says_what_it_uses_and_reuses(tmp_path):
    cache = tmp_path / "cache"
    args = ["--variant", "l0", "--freeze-backbone", "--feature-cache-dir", str(cache)]
    env = {"ERSM_EVAL_PROGRESS_SECONDS": "1000"}
    first = _train(*args, "--out", str(tmp_path / "a.pt"), env=env)
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert "MiB on disk in the cache folder" in text and "memory-mapped (memory: a batch at a time)" in text
    assert text.index("on disk in the cache folder") < text.index("backbone features, train (once)")  # said before the pass
    second = _train(*args, "--out", str(tmp_path / "b.pt"), env=env)
    assert second.exit_code == 0, second.output
    assert "reusing the cached train features in" in " ".join(second.output.split())
    assert "backbone features, train (once)" not in second.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.history.csv").drop(columns="seconds"),
                                  pd.read_csv(tmp_path / "b.history.csv").drop(columns="seconds"))
    memory = _train("--variant", "l0", "--freeze-backbone", "--out", str(tmp_path / "c.pt"), env=env)
    assert "feature cache: " in memory.output and "in memory, no disk" in " ".join(memory.output.split())
