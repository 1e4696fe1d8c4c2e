"""Options out of range: one line naming the option, exit code 2, nothing written, inputs untouched."""

from __future__ import annotations

import pytest

from tests.safety.inputs import one_line_error, run_cli, two_class_checkpoint, untouched

EVAL_CASES = [
    (["--seeds=-1"], "--seeds takes non-negative integers, got -1"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--limit", "0"], "--limit must be at least 1, got 0"),
    (["--workers=-1"], "--workers must be at least 0, got -1"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--device", "tpu"], "device 'tpu'"),
]


@pytest.mark.parametrize("command", ["deletion", "occlusion", "sparsity"])
@pytest.mark.parametrize("extra,message", EVAL_CASES, ids=[c[1][:24] for c in EVAL_CASES])
def test_evaluation_options(tmp_path_factory, command, extra, message):
    tmp = tmp_path_factory.mktemp("opt")
    ckpt = two_class_checkpoint(tmp / "two.pt", names=("disk-solid", "disk-striped"))
    with untouched(ckpt):
        r = run_cli(command, ckpt, "--dataset", "synthetic", "--out", tmp / "o", "--quiet", "--no-report", *extra)
        one_line_error(r, message)
    assert not (tmp / "o").exists()


TRAIN_CASES = [
    (["--seed=-1"], "--seed must be at least 0, got -1"),
    (["--drop-prob", "1"], "drop_prob must lie in [0, 1), got 1.0"),
    (["--drop-prob=-0.1"], "drop_prob must lie in [0, 1)"),
    (["--block-size", "0"], "block_size must be at least 1, got 0"),
    (["--image-size", "8"], "image_size 8 is too small for compact_cnn"),
    (["--weight-decay", "nan"], "weight_decay must be a finite number"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number"),
    (["--lr", "inf"], "lr must be a positive number"),
    (["--tau", "0"], "tau must be positive"),
    (["--init-keep", "1"], "init_keep is a probability strictly between 0 and 1"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--device", "cuda:7"], "cuda:7"),
]


@pytest.mark.parametrize("extra,message", TRAIN_CASES, ids=[c[1][:24] for c in TRAIN_CASES])
def test_train_options(tmp_path, extra, message):
    r = run_cli("train", "--out", tmp_path / "m.pt", "--quiet", "--epochs", "1", "--image-size", "32", *extra)
    one_line_error(r, message)
    assert not (tmp_path / "m.pt").exists()
