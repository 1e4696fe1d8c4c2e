"""Checkpoints as safetensors: written by train --out NAME.safetensors, read by every command, converted."""

import json

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from ersm_core.checkpoint import is_checkpoint_file, load_checkpoint, save_checkpoint
from ersm_core.errors import CheckpointError
from ersm_core.model import ModelConfig, build_model

runner = CliRunner()
QUICK = ["train", "--dataset", "synthetic", "--image-size", "32", "--n-train", "40", "--n-test", "8", "--batch-size", "8",
         "--epochs", "1", "--device", "cpu", "--quiet", "--variant", "ersm_full"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A model trained to NAME.safetensors, converted to .pt."""
    folder = tmp_path_factory.mktemp("st")
    result = runner.invoke(app, [*QUICK, "--out", str(folder / "m.safetensors")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["convert", str(folder / "m.safetensors"), str(folder / "m.pt")])
    assert result.exit_code == 0, result.output
    return folder / "m.safetensors", folder / "m.pt"


def test_train_writes_a_safetensors_file_that_safetensors_reads(both):
    from safetensors import safe_open
    from safetensors.torch import load_file

    st, _ = both
    tensors = load_file(str(st))
    assert "head.weight" in tensors and tensors["head.weight"].shape == (10, 256)
    with safe_open(str(st), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "ersm-eval checkpoint" and json.loads(meta["config"])["variant"] == "ersm_full"
    assert len(json.loads(meta["class_names"])) == 10 and "history" in json.loads(meta["provenance"])
    assert (st.parent / "m.history.csv").exists() and not (st.parent / "m.state.pt").exists()
    assert is_checkpoint_file(st) and is_checkpoint_file(both[1])


def test_both_formats_give_the_same_logits(both):
    st, pt = both
    a, b = load_checkpoint(st), load_checkpoint(pt)
    assert a.config == b.config and a.class_names == b.class_names
    assert b.provenance["converted_from"]["sha256"] == a.sha256
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x))


def test_an_evaluation_reads_a_safetensors_checkpoint(both, tmp_path):
    st, _ = both
    result = runner.invoke(app, ["sparsity", str(st), "--dataset", "synthetic", "--limit", "8", "--device", "cpu",
                                 "--out", str(tmp_path / "s"), "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output


def test_convert_refuses_its_source_and_an_existing_target(both, tmp_path):
    st, pt = both
    same = runner.invoke(app, ["convert", str(st), str(st)])
    assert same.exit_code != 0 and "Traceback" not in same.output
    exists = runner.invoke(app, ["convert", str(st), str(pt)])
    assert exists.exit_code == 2 and "already exists" in exists.output


def _st_file(path, header: bytes, data: bytes = b""):
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


@pytest.mark.parametrize("header, data, message", [
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 4, "claims bytes"),
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', b"\0" * 4, "do not hold its shape"),
    (b'{"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}', b"\0" * 8, "not a real floating-point"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], '
     b'"data_offsets": [0, 4]}}', b"\0" * 4, "overlap"),
    (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', b"\0" * 4, "shape"),
    (b"[" * 100_000, b"", "not valid JSON"),
    (b'{"__metadata__": {"format": 5}}', b"", "map of strings to strings"),
    (b'{"__metadata__": {"format": "other"}}', b"", "not an ersm-eval checkpoint"),
])
def test_malformed_safetensors_checkpoints_are_refused(tmp_path, header, data, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_st_file(tmp_path / "bad.safetensors", header, data))


def test_header_size_is_bounded_before_reading(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match=r"header claims 1099511627776 bytes"):
        load_checkpoint(path)


def test_metadata_is_checked_like_a_pt_checkpoint(tmp_path):
    model = build_model(ModelConfig(num_classes=2, variant="baseline", image_size=32))
    path = save_checkpoint(tmp_path / "m.safetensors", model, ["a", "b"])
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    config = json.loads(meta["config"])
    config["image_size"] = 10**9
    save_file(load_file(str(path)), str(path), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"config image_size = 1000000000 is not an integer in \[8, 1024\]"):
        load_checkpoint(path)
    deep = {"p": None}
    for _ in range(40):
        deep = {"p": deep}
    save_file(load_file(str(path)), str(path), metadata={**meta, "provenance": json.dumps(deep)})
    with pytest.raises(CheckpointError, match="nested deeper than 32 levels"):
        load_checkpoint(path)
