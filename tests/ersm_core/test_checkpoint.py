"""Checkpoints: exact round trip, and every bad file refused with a helpful message."""

import os

import pytest
import torch

from ersm_core.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from ersm_core.errors import CheckpointError
from ersm_core.model import ModelConfig, build_model

CLASSES = ["disk", "square", "star"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=3, variant="ersm_full", image_size=64, alpha=0.01, bias="per_token")).eval()


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(tmp_path / "model.pt", model, CLASSES, {"epochs": 3, "test_acc": 0.5, "nested": {"a": [1, 2]}})


def _payload(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_round_trip_is_exact(saved, model):
    loaded = load_checkpoint(saved)
    assert loaded.config == model.config
    assert loaded.class_names == CLASSES
    assert loaded.provenance["epochs"] == 3 and loaded.provenance["nested"] == {"a": [1, 2]}
    assert "torch" in loaded.provenance["versions"]
    assert len(loaded.sha256) == 64 and loaded.path == saved
    assert not loaded.model.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    restored_model, config, classes, provenance = loaded  # tuple-style unpacking
    assert config == model.config and classes == CLASSES


def test_save_leaves_no_temporary_files(saved):
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.pt"]


def test_class_count_must_match(tmp_path, model):
    with pytest.raises(CheckpointError, match="2 class names for a model with 3 classes"):
        save_checkpoint(tmp_path / "bad.pt", model, ["a", "b"])


class _RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickled_code_is_refused_and_never_runs(tmp_path, saved):
    marker = tmp_path / "code-ran"
    payload = _payload(saved)
    payload["provenance"]["note"] = _RunsCode(marker)  # otherwise a normal-looking checkpoint
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    with pytest.raises(CheckpointError, match="refused to load .*pickled code.*never runs"):
        load_checkpoint(evil)
    assert not marker.exists()
    # the file really does carry code: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        load_checkpoint(path)


def test_truncated_file(tmp_path, saved):
    data = saved.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable ersm-eval checkpoint.*truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello, this is a text file\n", b"\x80\x02}q\x00.garbage", bytes(range(256)) * 4])
def test_text_or_garbage_file(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable ersm-eval checkpoint|not an ersm-eval checkpoint"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_our_format(tmp_path, model):
    path = tmp_path / "state_dict.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not an ersm-eval checkpoint.*--weights"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path, saved):
    payload = _payload(saved)
    payload["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="newer than this ersm-eval understands.*upgrade"):
        load_checkpoint(path)


@pytest.mark.parametrize("key", ["config", "state_dict", "class_names", "provenance"])
def test_missing_key(tmp_path, saved, key):
    payload = _payload(saved)
    del payload[key]
    path = tmp_path / "partial.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"missing the keys \\['{key}'\\]"):
        load_checkpoint(path)


def test_config_and_weights_that_do_not_match(tmp_path, saved):
    payload = _payload(saved)
    payload["config"]["image_size"] = 32  # a 2x2 map: the per-token bias no longer fits (4 tokens, not 16)
    path = tmp_path / "mismatch.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not match the model its config describes"):
        load_checkpoint(path)
    payload = _payload(saved)
    payload["config"]["temperature"] = 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid model config.*unknown keys"):
        load_checkpoint(path)
