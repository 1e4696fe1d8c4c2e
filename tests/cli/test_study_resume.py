"""A study killed part-way (SIGKILL) and resumed with --resume writes byte-identical tables."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.resume import store_folder
from tests.cli.killed_runs import killed_run

LIMIT = 24



@pytest.fixture(scope="module")
def frozen_pair(tmp_path_factory) -> list[Path]:
    """Two seeds of the baseline on one frozen compact_cnn backbone: one bundle, one backbone pass per image."""
    from ersm_core.model import ModelConfig, build_model
    from ersm_core.training import TrainConfig, train
    from tests.conftest import TINY_IMAGE_SIZE, TINY_N_TEST

    folder = tmp_path_factory.mktemp("pair")
    torch.manual_seed(7)
    weights = folder / "backbone.pt"
    torch.save(build_model(ModelConfig(num_classes=10, image_size=TINY_IMAGE_SIZE)).backbone.state_dict(), weights)
    paths = []
    for seed in (0, 1):
        config = ModelConfig(num_classes=10, variant="baseline", image_size=TINY_IMAGE_SIZE, freeze_backbone=True)
        result = train(config, TrainConfig(dataset="synthetic", epochs=1, batch_size=32, seed=seed, device="cpu",
                                           n_train=64, n_test=TINY_N_TEST), weights=weights)
        result.save(folder / f"frozen-s{seed}.pt")
        paths.append(folder / f"frozen-s{seed}.pt")
    return paths


def _tables(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def _stored(out: Path, part: str) -> list[int]:
    indices = []
    for path in sorted(store_folder(out).glob(f"{part}.r0.*.npz")):
        with np.load(path, allow_pickle=False) as data:
            indices += data["index"].tolist()
    return sorted(indices)


OPTIONS = ["--dataset", "synthetic", "--limit", str(LIMIT), "--batch-size", "4", "--rankings", "energy,cam,random",
           "--seeds", "0,1", "--steps", "6", "--occlusion-severities", "0.2,0.6", "--n-boot", "100", "--quiet"]
KINDS = ("deletion", "sparsity", "occlusion")


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint, frozen_pair) -> list[str]:
    return [str(tiny_checkpoint), *map(str, frozen_pair)]  # two bundles: ersm_full alone, then the pair


@pytest.fixture(scope="module")
def whole(checkpoints, tmp_path_factory) -> dict[str, bytes]:
    """The tables of an uninterrupted study."""
    out = tmp_path_factory.mktemp("whole") / "study"
    result = CliRunner().invoke(app, ["study", *checkpoints, *OPTIONS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Resumed" not in result.output and not store_folder(out).exists()
    tables = _tables(out)
    assert {"members.csv", "group_summary.csv", "group_differences.csv", "groups.csv", "paper_tables.csv",
            "runs/frozen-s1/deletion/deletion_curves.csv", "runs/ersm_full/occlusion/occlusion_summary.csv",
            "runs/frozen-s0/sparsity/per_image.csv"} <= set(tables)
    return tables


def test_killed_study_resumes_to_the_same_tables(checkpoints, frozen_pair, whole, tmp_path):
    resumed = tmp_path / "resumed"
    killed = killed_run(["study", *checkpoints, *OPTIONS, "--out", str(resumed)], after=LIMIT + 12)
    assert killed.returncode == -9, killed.stderr[-2000:]  # died by SIGKILL: the first bundle done, the pair half-way
    assert not resumed.exists()
    assert {len(_stored(resumed, f"{kind}-ersm_full")) for kind in KINDS} == {LIMIT}
    pair = {tuple(_stored(resumed, f"{kind}-{p.stem}")) for kind in KINDS for p in frozen_pair}
    assert len(pair) == 1 and len(next(iter(pair))) == 12, "the pair's six stores hold the same images"

    # another list of checkpoints is refused, leaving the records alone
    refused = CliRunner().invoke(app, ["study", *checkpoints[:2], *OPTIONS, "--out", str(resumed), "--resume"])
    assert refused.exit_code != 0 and not resumed.exists()
    assert "cannot resume" in refused.output and "checkpoints" in refused.output and "Traceback" not in refused.output

    # the kill window: one store of the pair lost its last chunk, so the pair goes on from the 8 images all six hold
    last = sorted(store_folder(resumed).glob(f"sparsity-{frozen_pair[1].stem}.r0.*.npz"))[-1]
    last.unlink()
    result = CliRunner().invoke(app, ["study", *checkpoints, *OPTIONS, "--out", str(resumed), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"Resumed {LIMIT + 8} of {2 * LIMIT} image(s) ({LIMIT} images × 2 backbone passes)" in result.output
    assert _tables(resumed) == whole
    assert not store_folder(resumed).exists(), "the resume folder is removed once the study folder is written"


def test_ctrl_c_writes_every_store_at_one_boundary_and_a_bundle_writes_with_its_last_batch(
        checkpoints, frozen_pair, whole, tmp_path, monkeypatch):
    import cli.study

    @contextlib.contextmanager
    def interrupting_bar(total, description):
        done = [0]

        def advance(n):
            done[0] += n
            if done[0] >= LIMIT + 12:
                raise KeyboardInterrupt
        yield advance

    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "3600")  # no timed write during the run
    monkeypatch.setattr(cli.study, "bars", lambda quiet: interrupting_bar)
    out = tmp_path / "study"
    stopped = CliRunner().invoke(app, ["study", *checkpoints, *OPTIONS, "--out", str(out)])
    assert stopped.exit_code == 130 and not out.exists()
    assert {len(_stored(out, f"{kind}-ersm_full")) for kind in KINDS} == {LIMIT}  # written with its last batch
    pair = {tuple(_stored(out, f"{kind}-{p.stem}")) for kind in KINDS for p in frozen_pair}
    assert len(pair) == 1 and len(next(iter(pair))) == 12, "every store of the pair wrote what it finished"
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["study", *checkpoints, *OPTIONS, "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"Resumed {LIMIT + 12} of {2 * LIMIT} image(s)" in result.output
    assert _tables(out) == whole
