"""Scale-out: 2 gloo processes on the CPU under torchrun give the same CSVs, to the last digit,
as a single process, with each image evaluated exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ersm_core.checkpoint import save_checkpoint
from ersm_core.data.synthetic import CLASS_NAMES
from ersm_core.model import ModelConfig, build_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", "COLUMNS": "120"})
    return env


def _single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=_env(), capture_output=True, text=True, timeout=300)


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "-m", "cli.main", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10, image_size=32)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("dist") / "m.pt", model, list(CLASS_NAMES[:10]))  # the synthetic classes: names must match


COMMANDS = {
    "deletion": ["--seeds", "0,1"],
    "sparsity": ["--no-randomization"],  # the randomization check runs in one process only
    "occlusion": ["--severities", "0,0.3", "--patterns", "random_squares,object"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_two_processes_equal_one(tmp_path, ckpt, command):
    common = [command, str(ckpt), "--dataset", "synthetic", "--limit", "13", "--batch-size", "4", "--quiet",
              "--no-report", *COMMANDS[command]]
    one = _single([*common, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _torchrun([*common, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, (two.stdout[-2000:], two.stderr[-3000:])
    csvs = sorted(p.name for p in (tmp_path / "one").glob("*.csv"))
    assert csvs and csvs == sorted(p.name for p in (tmp_path / "two").glob("*.csv"))
    for name in csvs:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2
    # only rank 0 wrote: no stray partial folders beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_training_under_torchrun_writes_one_checkpoint(tmp_path):
    out = tmp_path / "ddp.pt"
    r = _torchrun(["train", "--dataset", "synthetic", "--image-size", "32", "--n-train", "64", "--n-test", "16",
                   "--epochs", "1", "--batch-size", "8", "--variant", "ersm_full", "--val-fraction", "0", "--quiet", "--out", str(out)])
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    from ersm_core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out)
    assert ckpt.provenance["world_size"] == 2
    assert ckpt.provenance["train_size"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.history.csv", "ddp.pt"]
