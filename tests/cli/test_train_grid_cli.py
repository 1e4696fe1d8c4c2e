"""``ersm-eval train --seeds/--variants``: a folder of models, each what a separate run writes; bad lists refused."""

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import cli.train as cli_train
from cli.main import app
from ersm_core.checkpoint import load_checkpoint

runner = CliRunner()

# 32 px compact_cnn (2×2 map), 40 training and 16 test images, two epochs of a frozen backbone: about a second each
QUICK = ["--dataset", "synthetic", "--image-size", "32", "--n-train", "40", "--n-test", "16", "--batch-size", "16",
         "--epochs", "2", "--device", "cpu", "--freeze-backbone", "--no-augment", "--quiet"]


def _train(*args):
    return runner.invoke(app, ["train", *QUICK, *args])


def _same_model(a, b):
    """Two checkpoints (and their history CSVs) hold the same run: weights, config and provenance but its timing."""
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert x.config == y.config and x.class_names == y.class_names
    sx, sy = x.model.state_dict(), y.model.state_dict()
    assert list(sx) == list(sy) and all(torch.equal(sx[k], sy[k]) for k in sx)

    def untimed(p):
        p = {k: v for k, v in p.items() if k not in ("wall_seconds", "versions")}
        p["feature_cache"] = {k: v for k, v in p["feature_cache"].items() if k != "seconds"}
        p["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in p["history"]]
        return p

    assert untimed(x.provenance) == untimed(y.provenance)
    hx, hy = (pd.read_csv(p.with_name(f"{p.stem}.history.csv")).drop(columns="seconds") for p in (a, b))
    pd.testing.assert_frame_equal(hx, hy, check_exact=True)


def test_grid_writes_one_model_per_member_each_equal_to_its_single_run(tmp_path):
    out = tmp_path / "grid"
    result = _train("--seeds", "0,1", "--variants", "baseline,ersm_full", "--out", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{v}-s{s}{ext}" for v in ("baseline", "ersm_full") for s in (0, 1)
                           for ext in (".pt", ".history.csv"))  # no resume state left behind
    assert "4 of 4 models in" in result.output
    single = tmp_path / "single.pt"
    result = _train("--seed", "1", "--variant", "ersm_full", "--out", str(single))
    assert result.exit_code == 0, result.output
    _same_model(out / "ersm_full-s1.pt", single)
    loaded = load_checkpoint(out / "baseline-s0.pt")
    assert loaded.config.variant == "baseline" and loaded.provenance["seed"] == 0


def test_seeds_alone_use_the_variant_and_show_progress_over_the_grid(tmp_path):
    out = tmp_path / "g"
    result = runner.invoke(app, ["train", *[a for a in QUICK if a != "--quiet"], "--variant", "l0", "--seeds", "3,5",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.pt")) == ["l0-s3.pt", "l0-s5.pt"]
    assert "[1/2] l0 seed 3: training | grid elapsed" in result.output and "left -" in result.output
    assert "[2/2] l0 seed 5: done" in result.output
    # a frozen backbone built without weights is drawn from one fixed seed: the seeds share its features
    assert "reusing the backbone features" in result.output
    backbones = [load_checkpoint(out / f"l0-s{s}.pt").model.backbone.state_dict() for s in (3, 5)]
    assert all(torch.equal(backbones[0][k], backbones[1][k]) for k in backbones[0])


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,1", "--out", "{tmp}/m.pt"], "must be a folder"),
    (["--seeds", "0,1,0", "--out", "{tmp}/g"], "--seeds lists 0 more than once"),
    (["--variants", "baseline,ersm,l0", "--out", "{tmp}/g"], "unknown variant 'ersm'.*ersm_unary, ersm_full"),
    (["--variants", "l0,l0", "--out", "{tmp}/g"], "--variants lists l0 more than once"),
    (["--seeds", "0,4294967296", "--out", "{tmp}/g"], "--seeds takes non-negative integers up to 4294967295"),
    (["--seeds=0,-1", "--out", "{tmp}/g"], "--seeds takes non-negative integers"),
    (["--seeds", "0,x", "--out", "{tmp}/g"], "--seeds takes comma-separated integers"),
    (["--seeds", "0,1", "--seed", "4", "--out", "{tmp}/g"], "--seed .* or --seeds .*not both"),
    (["--variants", "l0", "--variant", "baseline", "--out", "{tmp}/g"], "not both"),
    (["--seeds", "0", "--resume", "--out", "{tmp}/g"], "nothing to resume"),
])
def test_bad_grid_input_is_one_message_and_writes_nothing(tmp_path, args, message):
    result = _train(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    assert pd.Series([" ".join(result.output.split())]).str.contains(message).all(), result.output
    assert list(tmp_path.iterdir()) == []


def test_existing_member_needs_overwrite(tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    (out / "l0-s1.pt").write_bytes(b"precious")
    result = _train("--variant", "l0", "--seeds", "0,1", "--out", str(out))
    assert result.exit_code == 2 and "already exists" in result.output and "--overwrite" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["l0-s1.pt"]  # nothing trained, nothing written


def test_stopped_grid_resumes_each_member(tmp_path, monkeypatch):
    """Ctrl-C in the second member's first epoch, then --resume: the first is kept, the second continues from its
    state, the third is trained; all equal an uninterrupted grid."""
    whole = tmp_path / "whole"
    assert _train("--seeds", "0,1,2", "--variant", "l0", "--out", str(whole)).exit_code == 0
    original, runs = cli_train._train_display, []

    def stopping(display):
        progress = original(display)
        runs.append(progress)
        if len(runs) == 2:
            end = progress.epoch_end

            def epoch_end(row):
                end(row)
                raise KeyboardInterrupt

            progress.epoch_end = epoch_end
        return progress

    monkeypatch.setattr(cli_train, "_train_display", stopping)
    out = tmp_path / "stopped"
    result = _train("--seeds", "0,1,2", "--variant", "l0", "--out", str(out))
    assert result.exit_code == 130 and "1 of 3 models written" in result.output and "--resume" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["l0-s0.history.csv", "l0-s0.pt", "l0-s1.history.csv",
                                                     "l0-s1.state.pt"]
    monkeypatch.setattr(cli_train, "_train_display", original)
    first = (out / "l0-s0.pt").stat().st_mtime_ns
    refused = _train("--seeds", "0,1,2", "--variant", "l0", "--lr", "0.01", "--out", str(out), "--resume")
    assert refused.exit_code == 2 and "other options" in refused.output
    result = _train("--seeds", "0,1,2", "--variant", "l0", "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert "kept (finished): l0-s0" in result.output and "3 of 3 models" in result.output
    assert (out / "l0-s0.pt").stat().st_mtime_ns == first and not (out / "l0-s1.state.pt").exists()
    for seed in (0, 1, 2):
        _same_model(out / f"l0-s{seed}.pt", whole / f"l0-s{seed}.pt")
