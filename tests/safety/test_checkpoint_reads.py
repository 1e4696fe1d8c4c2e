"""A checkpoint is data, never code, and never makes the loader allocate more than its contents justify."""

from __future__ import annotations

import pytest
import torch

from ersm_core import checkpoint as checkpoint_module
from ersm_core.checkpoint import load_checkpoint
from ersm_core.errors import CheckpointError
from tests.safety.inputs import one_line_error, run_cli, two_class_checkpoint, untouched


@pytest.fixture()
def payload(tmp_path):
    return torch.load(two_class_checkpoint(tmp_path / "two.pt"), weights_only=True)


def _save(tmp_path, payload):
    torch.save(payload, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


@pytest.mark.parametrize("key,value,message", [
    ("image_size", 10**9, r"config image_size = 1000000000 is not an integer in \[8, 1024\]"),
    ("image_size", "128", r"config image_size = '128' is not an integer"),
    ("num_classes", 10**8, r"config num_classes = 100000000 is not an integer in \[2, 100000\]"),
    ("patch_size", 0, r"config patch_size = 0 is not an integer in \[1, 1024\]"),
    ("alpha", float("inf"), "config alpha = inf is not finite"),
    ("mean", [0.5] * 10**4, "config mean holds 10000 values"),
])
def test_config_values_are_range_checked_before_building(tmp_path, payload, monkeypatch, key, value, message):
    built = []
    monkeypatch.setattr(checkpoint_module, "build_model", lambda *a, **k: built.append(1))
    payload["config"][key] = value
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_save(tmp_path, payload))
    assert not built, "nothing may be built from an out-of-range config"


def test_class_names_must_fit_the_head(tmp_path, payload):
    payload["class_names"] = ["cat", "dog", "eel"]
    with pytest.raises(CheckpointError, match="it names 3 classes for a model with 2"):
        load_checkpoint(_save(tmp_path, payload))
    payload["class_names"] = ["cat", "x" * 5000]
    with pytest.raises(CheckpointError, match="a class name has 5000 characters"):
        load_checkpoint(_save(tmp_path, payload))
    payload["class_names"] = ["cat", 7]
    with pytest.raises(CheckpointError, match="class names are not a list of strings"):
        load_checkpoint(_save(tmp_path, payload))


def test_provenance_size_and_nesting_are_bounded(tmp_path, payload, monkeypatch):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    payload["provenance"] = {"deep": deep}
    with pytest.raises(CheckpointError, match="nested deeper than 32 levels"):
        load_checkpoint(_save(tmp_path, payload))
    monkeypatch.setitem(checkpoint_module.LIMITS, "provenance_bytes", 1000)
    payload["provenance"] = {"notes": "y" * 2000}
    with pytest.raises(CheckpointError, match=r"its provenance takes 20\d\d bytes as JSON \(at most 1000\)"):
        load_checkpoint(_save(tmp_path, payload))


def test_cli_message_is_one_line_and_input_untouched(tmp_path, payload):
    payload["config"]["image_size"] = 10**6
    path = _save(tmp_path, payload)
    with untouched(path):
        one_line_error(run_cli("deletion", path, "--dataset", "synthetic", "--out", tmp_path / "o", "--quiet"),
                       "config image_size = 1000000 is not an integer")
    assert not (tmp_path / "o").exists()


# -- config fields: type and range of every field, before anything is built --------------------------

@pytest.mark.parametrize("key,value,message", [
    ("mean", "abc", "config mean = 'abc' is not a list of 3 numbers"),
    ("mean", {"a": 1}, "config mean = {'a': 1} is not a list of 3 numbers"),
    ("mean", [0.5, "x", 0.5], r"config mean\[1\] = 'x' is not a number"),
    ("mean", [0.5, 0.5], "config mean holds 2 values"),
    ("std", [0.0, 0.0, 0.0], r"config std\[0\] = 0.0 is not positive"),
    ("std", [1.0, -1.0, 1.0], r"config std\[1\] = -1.0 is not positive"),
    ("std", [float("inf"), 1.0, 1.0], r"config std\[0\] = inf is not finite"),
    ("mean", [0.5, float("nan"), 0.5], r"config mean\[1\] = nan is not finite"),
    ("tau", "1.0", "config tau = '1.0' is not a number"),
    ("backbone", 7, "config backbone = 7 is not a string"),
    ("freeze_backbone", "yes", "config freeze_backbone = 'yes' is not true or false"),
    ("block_size", 10**6, r"config block_size = 1000000 is not an integer in \[1, 1024\]"),
    ("image_size", 8192, r"config image_size = 8192 is not an integer in \[8, 1024\]"),
])
def test_config_field_types_and_ranges_are_checked_before_building(tmp_path, payload, monkeypatch, key, value, message):
    built = []
    monkeypatch.setattr(checkpoint_module, "build_model", lambda *a, **k: built.append(1))
    payload["config"][key] = value
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_save(tmp_path, payload))
    assert not built, "nothing may be built from an out-of-range config"


@pytest.mark.parametrize("mean,std", [("abc", None), (None, [0, 0, 0]), (None, [float("inf"), 1.0, 1.0])])
def test_cli_bad_normalization_is_one_line(tmp_path, payload, mean, std):
    if mean is not None:
        payload["config"]["mean"] = mean
    if std is not None:
        payload["config"]["std"] = std
    path = _save(tmp_path, payload)
    with untouched(path):
        one_line_error(run_cli("deletion", path, "--dataset", "synthetic", "--limit", "4", "--steps", "2", "--seeds", "0",
                               "--no-report", "--out", tmp_path / "o", "--quiet"), "config", "mean" if mean else "std")
    assert not (tmp_path / "o").exists()


def test_crop_pct_cannot_blow_up_the_resize(tmp_path, payload):
    payload["config"]["crop_pct"] = 1e-9  # the eval resize is image_size / crop_pct per side
    with pytest.raises(CheckpointError, match=r"crop_pct must be 0 .* or in \[0.25, 1\], got 1e-09"):
        load_checkpoint(_save(tmp_path, payload))


def test_feature_map_is_sized_without_a_full_size_forward(monkeypatch):
    """The model's construction finds its feature grid on the meta device: no image-sized allocation."""
    from ersm_core.backbones import CompactCNN
    from ersm_core.model import ModelConfig, build_model

    devices = []
    original = CompactCNN.forward_features

    def spy(self, x):
        devices.append(x.device.type)
        return original(self, x)

    monkeypatch.setattr(CompactCNN, "forward_features", spy)
    model = build_model(ModelConfig(num_classes=2, image_size=1024, variant="baseline"))
    assert model.feature_hw == (64, 64)
    assert devices == ["meta"], devices
    with pytest.raises(Exception, match=r"image_size must be in \[8, 1024\]"):
        ModelConfig(num_classes=2, image_size=8192)


def test_state_dict_shapes_are_checked_before_the_model_is_built(tmp_path, payload, monkeypatch):
    payload["config"]["backbone"] = "resnet50"  # a bigger architecture than the weights fill
    built = []
    real = checkpoint_module.build_model

    def spy(config, *a, **k):
        import torch as _torch

        built.append(_torch.empty(0).device.type)  # the default device the model is built on
        return real(config, *a, **k)

    monkeypatch.setattr(checkpoint_module, "build_model", spy)
    with pytest.raises(CheckpointError, match=r"weights do not match the model its config describes \(resnet50"):
        load_checkpoint(_save(tmp_path, payload))
    assert built == ["meta"], "only a meta-device skeleton may be built before the shapes are checked"


# -- the archive: records stored, never compressed, read only after the headers are checked ----------

def _deflate_record(src, dst, suffix: str = "data/0", size: int | None = None):
    """Copy the torch zip ``src`` to ``dst`` with the record ending in ``suffix`` DEFLATE-compressed
    (``size`` zeros in place of its bytes when given: a small zip bomb)."""
    import zipfile

    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            record = zipfile.ZipInfo(info.filename)
            if info.filename.endswith(suffix):
                record.compress_type = zipfile.ZIP_DEFLATED
                data = bytes(size) if size is not None else data
            new.writestr(record, data)
    return dst


def test_compressed_record_is_refused_before_reading_records(tmp_path, monkeypatch):
    src = two_class_checkpoint(tmp_path / "two.pt")
    bomb = _deflate_record(src, tmp_path / "bomb.pt", "data/0", size=64 * 2**20)  # 64 MiB of zeros in ~64 KiB
    assert bomb.stat().st_size < 4 * 2**20
    loads = []
    monkeypatch.setattr(checkpoint_module.torch, "load", lambda *a, **k: loads.append(1))
    with pytest.raises(CheckpointError, match=r"refused to load .*record '.*data/0' is compressed .*67108864"):
        load_checkpoint(bomb)
    assert not loads, "torch.load may not see a compressed archive"
    monkeypatch.undo()
    with untouched(bomb):
        one_line_error(run_cli("deletion", bomb, "--dataset", "synthetic", "--out", tmp_path / "o", "--quiet"),
                       "is compressed", "zip bomb")


# -- tensors: plain CPU tensors of a real dtype --------------------------------------------------------

@pytest.mark.parametrize("kind,message", [
    ("meta", "'head.bias' is a tensor on the 'meta' device"),
    ("sparse", "'head.bias' is a sparse_coo tensor, not a plain (strided) one"),
    ("complex", "'head.bias' has dtype complex64, not a real floating-point or integer type"),
    ("bool", "'head.bias' has dtype bool"),
])
def test_unusual_tensors_are_refused_naming_the_key(tmp_path, payload, kind, message):
    bias = payload["state_dict"]["head.bias"]
    payload["state_dict"]["head.bias"] = {
        "meta": lambda: torch.empty(bias.shape, device="meta"),
        "sparse": lambda: bias.to_sparse(),
        "complex": lambda: torch.complex(bias, torch.full_like(bias, float("nan"))),  # NaN hides in the imaginary part
        "bool": lambda: bias > 0,
    }[kind]()
    path = _save(tmp_path, payload)
    with untouched(path):
        one_line_error(run_cli("deletion", path, "--dataset", "synthetic", "--limit", "4", "--steps", "2", "--seeds", "0",
                               "--no-report", "--out", tmp_path / "o", "--quiet"), message)
    assert not (tmp_path / "o").exists()


# -- plain pickles: refused as such, quietly, and their code never runs ---------------------------------

class _Touch:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_plain_pickle_is_refused_plainly_without_torch_warnings(tmp_path):
    import pickle
    import warnings

    marker = tmp_path / "code-ran"
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"format": "ersm-eval checkpoint", "x": _Touch(marker)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=r"plain \(legacy\) pickle.*can run code.*refused"):
            load_checkpoint(path)
    assert not caught, [str(w.message) for w in caught]
    with untouched(path):
        one_line_error(run_cli("deletion", path, "--dataset", "synthetic", "--out", tmp_path / "o", "--quiet"),
                       "plain (legacy) pickle", "refused")
    assert not marker.exists(), "the pickle's code must never run"


# -- backbone weights: --pretrained offline, --weights files -------------------------------------------

_TRAIN = ("train", "--dataset", "synthetic", "--image-size", "32", "--epochs", "1", "--limit", "8", "--n-train", "16",
          "--n-test", "8", "--num-classes", "2", "--quiet")


def test_pretrained_offline_is_one_line_without_hub_noise(tmp_path, monkeypatch, caplog):
    import logging

    import timm
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ersm_core import backbones

    real, offline_flags = timm.create_model, []

    def offline(name, pretrained=False, **kwargs):
        if not pretrained:
            return real(name, pretrained=False, **kwargs)
        offline_flags.append(constants.HF_HUB_OFFLINE)
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot "
                                      "find the requested files in the local cache.")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout=5.0: True)  # reach the download attempt
    caplog.set_level(logging.WARNING)
    out = tmp_path / "r18.pt"
    one_line_error(run_cli(*_TRAIN, "--backbone", "resnet18", "--pretrained", "--out", out),
                   "not in the local cache and could not be downloaded", "--weights PATH")
    assert offline_flags == [True, False], "the local cache is tried first, with the hub in offline mode"
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()], "huggingface_hub's retry noise is silenced"
    assert not out.exists()


def test_pretrained_unreachable_hub_fails_at_once(monkeypatch):
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ersm_core import backbones
    from ersm_core.errors import ConfigError

    calls = []

    def offline(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        raise LocalEntryNotFoundError("not in the local cache")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(ConfigError, match="not in the local cache and could not be downloaded"):
        backbones.build_backbone("resnet18", pretrained=True)
    assert calls == [True], "no download attempt (and no minute of retries) when the hub cannot be reached"


@pytest.mark.parametrize("content,message", [
    (b"", "is empty (0 bytes)"),
    ((10**15).to_bytes(8, "little") + b"{}", "not a valid .safetensors file"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "not a valid .safetensors file"),
])
def test_malformed_safetensors_weights_are_one_line(tmp_path, content, message):
    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(content)
    with untouched(weights):
        line = one_line_error(run_cli(*_TRAIN, "--weights", weights, "--out", tmp_path / "w.pt"), message)
    assert str(weights) in line or weights.name in line
    assert not (tmp_path / "w.pt").exists()


def test_weights_file_zip_bomb_and_plain_pickle_are_refused(tmp_path):
    import pickle

    from ersm_core.backbones import CompactCNN, load_backbone_weights

    plain = tmp_path / "plain.pth"
    torch.save(CompactCNN().state_dict(), tmp_path / "good.pth")
    bomb = _deflate_record(tmp_path / "good.pth", tmp_path / "bomb.pth", "data/0", size=16 * 2**20)
    plain.write_bytes(pickle.dumps({"x": _Touch(tmp_path / "code-ran")}, protocol=4))
    with pytest.raises(CheckpointError, match="is compressed"):
        load_backbone_weights(CompactCNN(), bomb)
    with pytest.raises(CheckpointError, match=r"is not a weights file: it is a plain \(legacy\) pickle"):
        load_backbone_weights(CompactCNN(), plain)
    assert not (tmp_path / "code-ran").exists()
    state = CompactCNN().state_dict()
    state["body.0.bias"] = state["body.0.bias"].to_sparse()
    torch.save(state, tmp_path / "sparse.pth")
    with pytest.raises(CheckpointError, match="'body.0.bias' is a sparse_coo tensor"):
        load_backbone_weights(CompactCNN(), tmp_path / "sparse.pth")
