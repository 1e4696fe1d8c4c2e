"""``ersm-eval demo`` on its small size (ERSM_DEMO_SMALL=1): what it writes, says and measures."""

import json
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import demo as demo_module
from cli.demo import DEMO_SETTINGS, SMALL_ENV, _Stages, cpu_seconds, demo_settings
from cli.main import app
from ersm_core.checkpoint import load_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory, one_thread):
    """One small demo run (32 px, 96 images, 1 epoch: about 15 CPU seconds) shared by the tests below."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--device", "cpu"], env={SMALL_ENV: "1"})
    assert result.exit_code == 0, result.output
    return out, result.output


def test_small_demo_writes_checkpoints_and_report(small_demo):
    out, _ = small_demo
    assert (out / "report.html").is_file()
    small = DEMO_SETTINGS["small"]
    for label in ("baseline", "ersm_full"):
        ckpt = load_checkpoint(out / "checkpoints" / f"{label}.pt")
        assert ckpt.config.variant == label and ckpt.config.image_size == small["image_size"]
        assert ckpt.config.num_classes == small["num_classes"]
        assert ckpt.provenance["dataset_options"]["spurious"] == small["spurious"]
        assert ckpt.provenance["train_config"]["lr"] == small["lr"]
        assert ckpt.provenance["train_config"]["batch_size"] == small["batch_size"]
    gate = load_checkpoint(out / "checkpoints" / "ersm_full.pt").config
    assert (gate.alpha, gate.beta, gate.tau, gate.init_keep) == (small["alpha"], small["beta"], small["tau"], small["init_keep"])
    base = load_checkpoint(out / "checkpoints" / "baseline.pt").config
    assert base.alpha == 1e-3  # the gate settings only go to the ERSM model


def test_small_demo_record_matches_tables(small_demo):
    out, _ = small_demo
    record = json.loads((out / "demo.json").read_text())
    assert record["settings"]["size"] == "small" and record["spurious"] == DEMO_SETTINGS["small"]["spurious"]
    assert record["checkpoints"] == {"baseline": "checkpoints/baseline.pt", "ersm_full": "checkpoints/ersm_full.pt"}
    assert record["cpu_seconds"] > 0 and record["wall_seconds"] > 0
    for label, model in record["models"].items():
        # the model's own accuracy (soft gate) from the sparsity run's per-image records
        per_image = pd.read_csv(out / f"sparsity-{label}" / "per_image.csv")
        assert model["test_accuracy"] == pytest.approx(per_image["correct"].mean())
        test = model["accuracy_test"]
        assert test["n_images"] == DEMO_SETTINGS["small"]["n_test"] and test["chance"] == pytest.approx(1 / 6)
        # the deletion protocol's k = 0 (hard mask on the ungated map) decides whether its curves can be read
        curves = pd.read_csv(out / f"deletion-{label}" / "deletion_curves.csv")
        k0 = curves[curves["k"] == 0]
        deletion = model["deletion_chance_test"]
        assert deletion["accuracy"] == pytest.approx(float(k0["accuracy"].iloc[0]))
        summary = pd.read_csv(out / f"deletion-{label}" / "deletion_summary.csv")
        expected = {r: v for r, v in zip(summary["ranking"], summary["verdict"]) if r != "random"}
        if deletion["at_chance"]:
            expected = {r: "not_testable" for r in expected}
        assert model["deletion_verdicts"] == expected
    loc = pd.read_csv(out / "sparsity-ersm_full" / "localization.csv")
    row = loc[(loc["map"] == "keep") & (loc["metric"] == "mass_in_object")].iloc[0]
    keep = record["models"]["ersm_full"]["keep_mass_on_object"]
    assert keep["excess_ci_low"] == pytest.approx(row["excess_ci_low"]) and keep["verdict"] == row["verdict"]


def test_small_demo_says_chance_plainly(small_demo):
    out, output = small_demo
    record = json.loads((out / "demo.json").read_text())
    flat = " ".join(output.split())
    for label, model in record["models"].items():
        said = f"{label} is at chance level" in flat
        assert said == model["accuracy_test"]["at_chance"]
    assert "[1/3] Training baseline" in flat and "[3/3] Evaluating" in flat
    assert "time left known after the first stage" in flat and "left)" in flat
    assert "checkpoints/baseline.pt" in flat and "checkpoints/ersm_full.pt" in flat


def test_settings_follow_environment(monkeypatch):
    monkeypatch.delenv(SMALL_ENV, raising=False)
    assert demo_settings()["size"] == "full" and demo_settings(quick=True)["size"] == "small"
    monkeypatch.setenv(SMALL_ENV, "1")
    assert demo_settings() == {**DEMO_SETTINGS["small"], "size": "small"}
    monkeypatch.setenv(SMALL_ENV, "0")
    assert demo_settings()["size"] == "full"


def test_full_settings_give_both_models_one_budget():
    full = DEMO_SETTINGS["full"]
    assert full["image_size"] % 16 == 0  # compact_cnn: four 2x2 pools
    assert 1 / full["num_classes"] < full["spurious"] < 1  # the background does predict the class in training


def test_stage_eta_by_hand(monkeypatch):
    clock = iter([100.0, 100.0, 130.0, 190.0])  # created, first, second and third stage
    monkeypatch.setattr(demo_module.time, "time", lambda: next(clock))
    lines = []
    monkeypatch.setattr(demo_module.console, "print", lambda text, **_: lines.append(text))
    stages = _Stages([0.4, 0.4, 0.2], quiet=False)
    stages.start("one")
    stages.end()
    stages.start("two")  # 30 s for 40% of the work: 45 s left
    stages.end()
    stages.start("three")  # 90 s for 80%: 22.5 s left
    assert "time left known after the first stage" in lines[0]
    assert "elapsed 0:00:30, about 0:00:45 left" in lines[1]
    assert "elapsed 0:01:30, about 0:00:22 left" in lines[2]


def test_cpu_seconds_counts_own_work():
    before = cpu_seconds()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert cpu_seconds() - before >= 0.04
