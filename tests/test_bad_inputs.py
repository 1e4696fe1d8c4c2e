"""Hard edges: every user mistake gives one clear message and a non-zero exit, no traceback,
no half-written output folder, and every input (checkpoint, data folder) byte-for-byte unchanged."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from ersm_core.checkpoint import FORMAT_VERSION, save_checkpoint
from ersm_core.model import ModelConfig, build_model
from ersm_eval.output import MARKER
from tests.safety.inputs import untouched

runner = CliRunner()


def _run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _message(result) -> str:
    return " ".join(result.output.split())  # undo rich's line wrapping


@pytest.fixture(scope="module")
def ckpt2(tmp_path_factory) -> Path:
    """An untrained 2-class compact_cnn ERSM checkpoint at 32 px (2×2 map)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, image_size=32)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "two.pt", model, ["cat", "dog"], {"dataset": "imagefolder"})


def _imagefolder(root: Path, classes=("cat", "dog"), per_class: int = 3, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        folder = root / "test" / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    if corrupt:
        (root / "test" / classes[0] / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def _deletion(ckpt, root, out, *extra):
    """Run deletion, asserting that the checkpoint and the data folder are untouched."""
    with untouched(ckpt, root):
        return _run("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", out,
                    "--seeds", "0", "--no-report", "--quiet", *extra)


# -- checkpoints --------------------------------------------------------------------------

def test_missing_checkpoint(tmp_path):
    r = _deletion(tmp_path / "nope.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "checkpoint not found" in _message(r)


def test_empty_checkpoint(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    r = _deletion(tmp_path / "empty.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "is empty" in _message(r)


def test_truncated_checkpoint(tmp_path, ckpt2):
    data = ckpt2.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    r = _deletion(tmp_path / "cut.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "not a readable ersm-eval checkpoint" in _message(r)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pt").write_text("hello, I am a text file\n")
    r = _deletion(tmp_path / "notes.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "not a readable ersm-eval checkpoint" in _message(r)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": "ersm-eval checkpoint", "format_version": 1, "evil": _Payload(str(marker))}, tmp_path / "evil.pt")
    r = _deletion(tmp_path / "evil.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2
    assert "refused" in _message(r) and "pickled code" in _message(r)
    assert not marker.exists(), "the checkpoint's code must never run"


def test_newer_checkpoint_format(tmp_path, ckpt2):
    payload = torch.load(ckpt2, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.pt")
    r = _deletion(tmp_path / "future.pt", tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "newer than this ersm-eval understands" in _message(r)


def test_class_count_mismatch(tmp_path, ckpt2):
    root = _imagefolder(tmp_path / "data", classes=("a", "b", "c"), per_class=1)
    r = _deletion(ckpt2, root, tmp_path / "out")
    assert r.exit_code == 2
    assert "has 3 classes but the checkpoint" in _message(r) and "trained for 2" in _message(r)


def test_patch_size_that_does_not_divide_the_map(tmp_path):
    r = _run("train", "--dataset", "synthetic", "--image-size", "64", "--patch-size", "3", "--epochs", "1",
             "--out", tmp_path / "m.pt", "--quiet")
    assert r.exit_code == 2
    msg = _message(r)
    assert "patch size 3 does not divide the 4x4 feature map" in msg and "[1, 2, 4]" in msg
    assert not (tmp_path / "m.pt").exists()


# -- data ---------------------------------------------------------------------------------

def test_missing_dataset(tmp_path, ckpt2):
    r = _run("deletion", ckpt2, "--dataset", "cub", "--data-root", tmp_path / "nowhere", "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 2
    assert str(tmp_path / "nowhere") in _message(r)


def test_corrupt_image_is_named(tmp_path, ckpt2):
    root = _imagefolder(tmp_path / "data", corrupt="broken.png")
    r = _deletion(ckpt2, root, tmp_path / "out")
    assert r.exit_code == 2
    assert "broken.png" in _message(r) and "--skip-bad-images" in _message(r)
    assert not (tmp_path / "out").exists()


def test_skip_bad_images_counts_and_lists_them(tmp_path, ckpt2):
    root = _imagefolder(tmp_path / "data", corrupt="broken.png")
    r = _deletion(ckpt2, root, tmp_path / "out", "--skip-bad-images")
    assert r.exit_code == 0, r.output
    assert "Skipped 1 unreadable image" in _message(r) and "broken.png" in _message(r)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["skipped_images"]) == 1 and "broken.png" in summary["skipped_images"][0]["error"]
    curves = (tmp_path / "out" / "deletion_curves.csv").read_text().splitlines()
    header = curves[0].split(",")
    assert curves[1].split(",")[header.index("n_images")] == "6", "6 good images evaluated (n_images column)"


def test_empty_dataset(tmp_path, ckpt2):
    for c in ("cat", "dog"):
        (tmp_path / "data" / "test" / c).mkdir(parents=True)
    r = _deletion(ckpt2, tmp_path / "data", tmp_path / "out")
    assert r.exit_code == 2 and "empty" in _message(r).lower()


def test_limit_zero(tmp_path, ckpt2):
    root = _imagefolder(tmp_path / "data")
    r = _deletion(ckpt2, root, tmp_path / "out", "--limit", "0")
    assert r.exit_code == 2 and "--limit must be at least 1" in _message(r)


# -- outputs ------------------------------------------------------------------------------

def test_existing_output_folder_needs_overwrite(tmp_path, ckpt2):
    root = _imagefolder(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    r = _deletion(ckpt2, root, out)
    assert r.exit_code == 2 and "--overwrite" in _message(r)
    assert (out / "precious.txt").read_text() == "keep me"
    r = _deletion(ckpt2, root, out, "--overwrite")  # not written by ersm-eval: never deleted
    assert r.exit_code == 2 and "not written by ersm-eval" in _message(r)
    assert (out / "precious.txt").read_text() == "keep me"
    (out / MARKER).write_text('{"tool": "ersm-eval"}')  # an earlier run's folder may be replaced
    r = _deletion(ckpt2, root, out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (out / "precious.txt").exists() and (out / "deletion_curves.csv").exists()


def test_ctrl_c_leaves_no_folder_looking_complete(tmp_path, ckpt2, monkeypatch):
    from ersm_eval import deletion as deletion_module

    root = _imagefolder(tmp_path / "data", per_class=4)
    calls = {"n": 0}
    original = deletion_module.DeletionEvaluator.update

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(deletion_module.DeletionEvaluator, "update", interrupted)
    out = tmp_path / "runs" / "out"
    r = _deletion(ckpt2, root, out, "--batch-size", "2")
    assert r.exit_code == 130
    assert "Interrupted" in _message(r)
    assert not out.exists()
    # only the hidden, marked resume folder with the finished image's records stays (for --resume)
    from ersm_eval.output import is_marked
    from ersm_eval.resume import store_folder

    left = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert left == [store_folder(out).name] and is_marked(store_folder(out))
    assert [p.suffix for p in store_folder(out).iterdir() if p.suffix == ".npz"] == [".npz"]


def test_non_finite_weights_are_reported(tmp_path, ckpt2):
    payload = torch.load(ckpt2, weights_only=True)
    first = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][first] = torch.full_like(payload["state_dict"][first], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    root = _imagefolder(tmp_path / "data")
    r = _deletion(tmp_path / "nan.pt", root, tmp_path / "out")
    assert r.exit_code == 2
    assert f"non-finite weights (NaN or inf) in {first!r}" in _message(r) and "nothing is evaluated" in _message(r)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["occlusion", "sparsity"])
def test_corrupt_image_in_other_commands(tmp_path, ckpt2, command):
    root = _imagefolder(tmp_path / "data", corrupt="broken.png")
    args = [command, ckpt2, "--dataset", "imagefolder", "--data-root", root, "--no-report", "--quiet"]
    with untouched(ckpt2, root):
        r = _run(*args, "--out", tmp_path / "a")
    assert r.exit_code == 2 and "broken.png" in _message(r)
    assert not (tmp_path / "a").exists()
    r = _run(*args, "--out", tmp_path / "b", "--skip-bad-images")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert len(summary["skipped_images"]) == 1 and "broken.png" in summary["skipped_images"][0]["error"]
