"""Options out of range: one line naming the option, exit code 2, nothing written, inputs untouched."""

from __future__ import annotations

import pytest

from tests.safety.inputs import one_line_error, run_cli, two_class_checkpoint, untouched

EVAL_CASES = [
    (["--seeds=-1"], "--seeds takes non-negative integers up to 4294967295, got -1"),
    (["--seeds", "0,99999999999999999999"], "--seeds takes non-negative integers up to 4294967295"),
    (["--subset-seed=-5"], "--subset-seed must be at least 0, got -5"),
    (["--subset-seed", "99999999999999999999"], "--subset-seed must be at most 4294967295"),
    (["--workers", "100000"], "--workers must be at most"),
    (["--batch-size", "100000000"], "--batch-size must be at most 4096"),
    (["--limit", "100000000000000000000"], "--limit must be at most"),
    (["--batch-size", "abc"], "Invalid value for '--batch-size'"),
    (["--bogus-option"], "No such option: --bogus-option"),
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
    (["--seed", "99999999999999999999"], "--seed must be at most 4294967295"),
    (["--seed", "4294967296"], "--seed must be at most 4294967295"),
    (["--subset-seed=-5"], "--subset-seed must be at least 0, got -5"),
    (["--workers", "100000"], "--workers must be at most"),
    (["--image-size", "100000"], "--image-size must be at most 1024, got 100000"),
    (["--lr", "1e300"], "--lr must be at most 10"),
    (["--weight-decay", "1e300"], "--weight-decay must be at most 10"),
    (["--alpha", "1e300"], "--alpha must be at most"),
    (["--n-train", "100000000000"], "--n-train must be at most 10000000"),
    (["--n-test", "100000000000"], "--n-test must be at most 10000000"),
    (["--epochs", "100000000"], "--epochs must be at most 100000"),
    (["--batch-size", "100000000"], "--batch-size must be at most 4096"),
    (["--feature-views", "100000000"], "--feature-views must be at most 64"),
    (["--patch-size", "100000"], "--patch-size must be at most 1024"),
    (["--epochs", "abc"], "Invalid value for '--epochs'"),
]


@pytest.mark.parametrize("extra,message", TRAIN_CASES, ids=[c[1][:24] for c in TRAIN_CASES])
def test_train_options(tmp_path, extra, message):
    r = run_cli("train", "--out", tmp_path / "m.pt", "--quiet", "--epochs", "1", "--image-size", "32", *extra)
    one_line_error(r, message)
    assert not (tmp_path / "m.pt").exists()


def test_other_seed_lists_and_demo_seed_are_bounded(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("disk-solid", "disk-striped"))
    r = run_cli("compare", ckpt, ckpt, "--dataset", "synthetic", "--out", tmp_path / "c", "--occlusion-seeds=-1")
    one_line_error(r, "--occlusion-seeds takes non-negative integers")
    one_line_error(run_cli("demo", "--out", tmp_path / "d", "--seed", "4294967296"), "--seed must be at most 4294967295")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


USAGE_CASES = [
    (["deletion"], "Missing argument 'CHECKPOINT'"),
    (["deletion", "{ckpt}", "--dataset", "synthetic", "--level", "xyz"], "Invalid value for '--level'"),
    (["deletion", "{ckpt}", "--out"], "requires an argument"),
    (["nosuch"], "No such command 'nosuch'"),
    (["--bogus"], "No such option: --bogus"),
    (["deletion", "{missing}", "--dataset", "synthetic"], "not found"),
]


@pytest.mark.parametrize("args,message", USAGE_CASES, ids=[c[1][:24] for c in USAGE_CASES])
def test_usage_errors_are_one_line(tmp_path, args, message):
    """click's own errors (bad values, unknown options, missing arguments) have the shape of every refusal."""
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    args = [a.format(ckpt=ckpt, missing=tmp_path / "missing.pt") for a in args]
    line = one_line_error(run_cli(*args), message)
    assert line.startswith("Error:")
    assert "╭" not in line and "Usage:" not in line


def test_unreadable_checkpoint_is_one_line(tmp_path, monkeypatch):
    """click's readable-path check (a chmod 000 file; faked, as root may read anything) gives one line."""
    import os

    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p) == str(ckpt) else real(p, mode, *a, **k))
    one_line_error(run_cli("deletion", ckpt, "--dataset", "synthetic", "--out", tmp_path / "o"), "is not readable")
    assert not (tmp_path / "o").exists()


def test_help_still_works():
    r = run_cli("deletion", "--help")
    assert r.exit_code == 0 and "--batch-size" in r.output
    assert run_cli().exit_code in (0, 2) and "Usage" in run_cli().output


def test_seed_at_the_top_of_the_range_trains(tmp_path):
    r = run_cli("train", "--out", tmp_path / "m.pt", "--quiet", "--epochs", "1", "--image-size", "32", "--n-train", "12",
                "--n-test", "4", "--num-classes", "2", "--seed", str(2**32 - 1), "--subset-seed", str(2**32 - 1),
                "--val-fraction", "0")
    assert r.exit_code == 0, r.output


def _npy_header_only(path, shape, descr="<f4"):
    """A .npy file whose header declares ``shape`` but holds no data (200 bytes asking for 1.6 TB)."""
    from numpy.lib import format as npy

    with open(path, "wb") as file:
        npy.write_array_header_1_0(file, {"descr": descr, "fortran_order": False, "shape": shape})
    return path


def test_scores_file_is_checked_from_its_header(tmp_path):
    """--scores: the header is checked (count, map size, dtype) before any memory is allocated; object
    arrays, strings and NaN are refused with one line."""
    import numpy as np

    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("disk-solid", "disk-striped"))
    bad = {
        "huge.npy": (_npy_header_only(tmp_path / "huge.npy", (100_000_000_000, 2, 2)), "holds 100000000000 maps"),
        "wide.npy": (_npy_header_only(tmp_path / "wide.npy", (4, 100_000, 100_000)), "maps are 100000×100000"),
        "obj.npy": (tmp_path / "obj.npy", "must hold numbers"),
        "str.npy": (tmp_path / "str.npy", "must hold numbers"),
        "nan.npy": (tmp_path / "nan.npy", "NaN or infinite"),
        "junk.npy": (tmp_path / "junk.npy", "is not a numpy .npy array"),
    }
    np.save(tmp_path / "obj.npy", np.empty((4, 2, 2), dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.full((4, 2, 2), "a"))
    nan = np.zeros((4, 2, 2), np.float32)
    nan[1, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "junk.npy").write_bytes(b"hello")
    for path, message in bad.values():
        with untouched(ckpt, path):
            r = run_cli("deletion", ckpt, "--dataset", "synthetic", "--limit", "4", "--scores", path, "--quiet",
                        "--no-report", "--out", tmp_path / "o", "--steps", "2", "--seeds", "0")
            one_line_error(r, message)
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("env, pattern", [
    ({"RANK": "abc"}, r"environment variable RANK='abc' is not a whole number"),
    ({"WORLD_SIZE": "abc"}, r"WORLD_SIZE='abc' is not a whole number"),
    ({"WORLD_SIZE": "2"}, r"WORLD_SIZE=2 but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"},
     r"RANK=2 must be below WORLD_SIZE=2"),
])
def test_launch_variables_are_checked_before_any_work(tmp_path, monkeypatch, env, pattern):
    import re

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ckpt = two_class_checkpoint(tmp_path / "m.pt")
    r = run_cli("sparsity", ckpt, "--dataset", "synthetic", "--limit", "4", "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert re.search(pattern, " ".join(r.output.split())), r.output
    assert not (tmp_path / "o").exists()


def test_launch_variables_of_a_real_launch_pass():
    from cli.common import check_launch_environment

    check_launch_environment({})
    check_launch_environment({"WORLD_SIZE": "1", "RANK": "0"})
    check_launch_environment({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"})
