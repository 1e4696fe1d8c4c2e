"""Checkpoints: one file with config, state dict, class names and provenance (SPEC §6).

Files are written with ``torch.save`` holding only plain types and tensors and
read with ``torch.load(..., weights_only=True)``, so loading a stranger's file
never runs pickled code.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ersm_core.errors import CheckpointError, ERSMError
from ersm_core.files import atomic_path, file_sha256
from ersm_core.versions import versions
from ersm_core.model import MAX_IMAGE_SIZE, ERSMModel, ModelConfig, build_model

__all__ = [
    "FORMAT_VERSION", "LIMITS", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "is_checkpoint_file",
    "check_finite_weights", "check_state_tensors", "check_archive", "versions",
]

FORMAT_VERSION = 1
_MAGIC = "ersm-eval checkpoint"
_REQUIRED = ("format", "format_version", "config", "state_dict", "class_names", "provenance")

# Bounds on what a checkpoint may ask for, checked before anything is built from it: a
# stranger's file must not make the loader allocate more than its contents justify.
LIMITS = {
    "image_size": MAX_IMAGE_SIZE,  # pixels per side (1024: see ersm_core.model.MAX_IMAGE_SIZE)
    "num_classes": 100_000,  # head outputs (must also equal the number of class names and the head's rows)
    "class_name_chars": 1_000,  # characters per class name
    "patch_size": 1_024,
    "provenance_bytes": 16 * 2**20,  # provenance as JSON
    "provenance_depth": 32,  # nesting of dicts and lists
    "state_dict_entries": 100_000,
    "block_size": 1_024,  # DropBlock block side on the map
    "archive_records": 100_100,  # records in the torch zip (one per tensor storage, plus a few)
}

# dtypes a state dict may hold: real floating point (weights) and integers (counters such as
# BatchNorm's num_batches_tracked); complex, quantized, bool and float8 tensors are refused.
_WEIGHT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64,
                            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})

# Field kinds of ModelConfig, checked before ModelConfig is built from a stranger's dict.
_INT_FIELDS = ("num_classes", "image_size", "patch_size", "block_size")
_FLOAT_FIELDS = ("alpha", "beta", "tau", "init_keep", "drop_prob", "l0_lambda", "crop_pct")
_STR_FIELDS = ("backbone", "variant", "pairwise_reduce", "bias", "interpolation")
_BOOL_FIELDS = ("pretrained", "freeze_backbone")
_VECTOR_FIELDS = ("mean", "std")  # empty (the backbone's own) or one finite float per RGB channel


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns."""

    model: ERSMModel  # rebuilt, in eval mode, on the CPU
    config: ModelConfig
    class_names: list[str]
    provenance: dict[str, Any]
    path: Path
    sha256: str = field(default="")

    def __iter__(self):  # allows ``model, config, classes, prov = load_checkpoint(p)``
        return iter((self.model, self.config, self.class_names, self.provenance))


def _plain(value: Any) -> Any:
    """Convert provenance values into types ``weights_only`` loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)  # drops str subclasses such as torch's TorchVersion
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def save_checkpoint(
    path: str | Path,
    model: ERSMModel,
    class_names: list[str],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a model with {model.config.num_classes} classes")
    prov = {"versions": versions(), **(provenance or {})}
    payload = {
        "format": _MAGIC,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "class_names": [str(c) for c in class_names],
        "provenance": _plain(prov),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def is_checkpoint_file(path: str | Path) -> bool:
    """True when ``path`` is a file holding an ersm-eval checkpoint (read as data, memory-mapped)."""
    try:
        check_archive(Path(path))  # no compressed or overlapping records, no plain pickle
        payload = _quiet_load(path, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not a checkpoint
        return False
    return isinstance(payload, dict) and payload.get("format") == _MAGIC


def _quiet_load(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` as data only (``weights_only``), its warnings silenced: a refusal is our one line."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def check_archive(path: Path, what: str = "ersm-eval checkpoint") -> None:
    """Refuse a file ``torch.load`` should not be given, reading only its headers, never a record's bytes.

    ``torch.save`` writes a zip whose records are STORED (uncompressed), so every record's size is
    backed by as many bytes of the file. A compressed record (a zip bomb: gigabytes of zeros in a few
    MB), records that claim more bytes than the file holds or overlap, and plain (legacy) pickles,
    which only an unpickler that may run code could read, are refused with one message.
    """
    an = "an" if what[:1] in "aeiou" else "a"
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(b"PK"):
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise CheckpointError(
                f"{path} is not {an} {what}: it is a plain (legacy) pickle, not the zip archive torch.save writes; "
                "reading it would need an unpickler that can run code, so it is refused. Re-save it with a "
                "current torch.save from a trusted copy"
            )
        raise CheckpointError(f"{path} is not a readable {what} (truncated or another kind of file?): not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable {what} (truncated or another kind of file?): {err}") from None
    if len(records) > LIMITS["archive_records"]:
        raise CheckpointError(f"{path} is not a valid {what}: its archive holds {len(records)} records (at most {LIMITS['archive_records']})")
    total = 0
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"refused to load {path}: its record {record.filename!r} is compressed ({record.compress_size} bytes "
                f"that would inflate to {record.file_size}); torch.save never compresses, so the file was "
                "altered (a zip bomb?)"
            )
        if record.file_size != record.compress_size or record.header_offset + record.file_size > size:
            raise CheckpointError(
                f"refused to load {path}: its record {record.filename!r} claims {record.file_size} bytes that the "
                f"{size}-byte file does not hold; the file is damaged or was altered"
            )
        total += record.file_size
    if total > size:
        raise CheckpointError(
            f"refused to load {path}: its records claim {total} bytes in all but the file has {size} (records "
            "overlap); the file is damaged or was altered"
        )


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); was the training run interrupted?")
    check_archive(path)
    try:
        payload = _quiet_load(path)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # not a code reference: a damaged or foreign file
            raise CheckpointError(f"{path} is not a readable ersm-eval checkpoint (truncated or another kind of file?)") from None
        detail = next((ln.strip() for ln in str(err).splitlines() if "unsupported" in ln.lower()), "")
        raise CheckpointError(
            f"refused to load {path}: it needs pickled code to load, which ersm-eval never runs "
            f"(only plain tensors and types are accepted). {detail}".rstrip()
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file fails in many ways (KeyError, RuntimeError, EOFError, ...)
        detail = ""
        if isinstance(err, (RuntimeError, OSError, zipfile.BadZipFile)):  # messages worth showing
            detail = ": " + (str(err).splitlines() or [""])[0].split(". ")[0]
        raise CheckpointError(f"{path} is not a readable ersm-eval checkpoint (truncated or another kind of file?){detail}") from None
    if not isinstance(payload, dict) or payload.get("format") != _MAGIC:
        raise CheckpointError(
            f"{path} is not an ersm-eval checkpoint (no '{_MAGIC}' marker); train one with `ersm-eval train` "
            "or pass a backbone state dict with --weights instead"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, newer than this ersm-eval understands "
            f"({FORMAT_VERSION}); upgrade ersm-eval"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is missing the keys {missing}; the file is damaged or incomplete")
    _check_bounds(path, payload)
    return payload


def _depth(value: Any, limit: int, level: int = 0) -> int:
    """Nesting depth of dicts/lists, stopping once ``limit`` is exceeded."""
    if level > limit:
        return level
    if isinstance(value, dict):
        return max([_depth(v, limit, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, (list, tuple)):
        return max([_depth(v, limit, level + 1) for v in value] or [level + 1])
    return level


def _check_bounds(path: Path, payload: dict[str, Any]) -> None:
    """Range-check what the model would be built from, before it is built."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid ersm-eval checkpoint: {what}; the file is damaged or was not written by ersm-eval")

    config, names, state, prov = payload["config"], payload["class_names"], payload["state_dict"], payload["provenance"]
    if not isinstance(config, dict):
        raise bad("its model config is not a mapping")
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("its state dict is not a mapping of names to tensors")
    if len(state) > LIMITS["state_dict_entries"]:
        raise bad(f"its state dict has {len(state)} entries (at most {LIMITS['state_dict_entries']})")
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise bad("its class names are not a list of strings")
    if not isinstance(prov, dict):
        raise bad("its provenance is not a mapping")
    _check_config(config, bad)
    _check_tensors(state, bad)
    if len(names) != config["num_classes"]:
        raise bad(f"it names {len(names)} classes for a model with {config['num_classes']}")
    long = next((c for c in names if len(c) > LIMITS["class_name_chars"]), None)
    if long is not None:
        raise bad(f"a class name has {len(long)} characters (at most {LIMITS['class_name_chars']})")
    head = state.get("head.weight")
    if head is not None and (head.dim() != 2 or head.shape[0] != config["num_classes"]):
        raise bad(f"its head has shape {tuple(head.shape)} for {config['num_classes']} classes")
    if _depth(prov, LIMITS["provenance_depth"]) > LIMITS["provenance_depth"]:
        raise bad(f"its provenance is nested deeper than {LIMITS['provenance_depth']} levels")
    try:
        size = len(json.dumps(prov, default=str))
    except (TypeError, ValueError, RecursionError):
        raise bad("its provenance is not plain data") from None
    if size > LIMITS["provenance_bytes"]:
        raise bad(f"its provenance takes {size} bytes as JSON (at most {LIMITS['provenance_bytes']})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_config(config: dict[str, Any], bad: Callable[[str], CheckpointError]) -> None:
    """Type and range of every ModelConfig field a checkpoint sets, before ModelConfig sees them.

    ModelConfig itself then checks how fields relate (ersm_full needs beta > 0, ...).
    """
    if not all(isinstance(k, str) for k in config):
        raise bad("its model config has keys that are not strings")
    ranges = {"image_size": (8, LIMITS["image_size"]), "num_classes": (2, LIMITS["num_classes"]),
              "patch_size": (1, LIMITS["patch_size"]), "block_size": (1, LIMITS["block_size"])}
    for key in _INT_FIELDS:
        if key not in config and key != "num_classes":
            continue  # the default
        value, (low, limit) = config.get(key), ranges[key]
        if not (_is_number(value) and isinstance(value, int) and low <= value <= limit):
            raise bad(f"config {key} = {_short(value)} is not an integer in [{low}, {limit}]")
    for key in _FLOAT_FIELDS:
        if key in config:
            value = config[key]
            if not _is_number(value):
                raise bad(f"config {key} = {_short(value)} is not a number")
            if not math.isfinite(value):
                raise bad(f"config {key} = {value} is not finite")
    for key in _STR_FIELDS:
        if key in config:
            value = config[key]
            if not isinstance(value, str):
                raise bad(f"config {key} = {_short(value)} is not a string")
            if len(value) > 256:
                raise bad(f"config {key} is a string of {len(value)} characters (at most 256)")
    for key in _BOOL_FIELDS:
        if key in config and not isinstance(config[key], bool):
            raise bad(f"config {key} = {_short(config[key])} is not true or false")
    for key in _VECTOR_FIELDS:
        if key not in config:
            continue
        value = config[key]
        if not isinstance(value, (list, tuple)):
            raise bad(f"config {key} = {_short(value)} is not a list of 3 numbers (one per RGB channel)")
        if len(value) not in (0, 3):
            raise bad(f"config {key} holds {len(value)} values (an empty list or 3, one per RGB channel)")
        for i, item in enumerate(value):
            if not _is_number(item):
                raise bad(f"config {key}[{i}] = {_short(item)} is not a number")
            if not math.isfinite(item):
                raise bad(f"config {key}[{i}] = {item} is not finite")
            if key == "std" and item <= 0:
                raise bad(f"config std[{i}] = {item} is not positive (inputs are divided by it)")


def _check_tensors(state: dict[str, torch.Tensor], bad: Callable[[str], CheckpointError]) -> None:
    """Every value a plain CPU tensor of a real dtype: no meta, sparse, quantized or complex tensors."""
    for name, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_sparse or tensor.is_quantized or tensor.is_nested:
            raise bad(f"{name!r} is a {str(tensor.layout).removeprefix('torch.')} tensor, not a plain (strided) one")
        if tensor.device.type != "cpu" or tensor.is_meta:
            raise bad(f"{name!r} is a tensor on the {tensor.device.type!r} device, which holds no values")
        if tensor.dtype not in _WEIGHT_DTYPES:
            raise bad(f"{name!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, not a real floating-point "
                      "or integer type")


def check_state_tensors(state: Any, source: str | Path) -> None:
    """Raise CheckpointError unless ``state`` maps names to plain CPU tensors of a real dtype (names the key)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{source} is not a usable state dict: {what}")

    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("it is not a mapping of names to tensors")
    if len(state) > LIMITS["state_dict_entries"]:
        raise bad(f"it has {len(state)} entries (at most {LIMITS['state_dict_entries']})")
    _check_tensors(state, bad)


def check_finite_weights(state_dict: dict[str, torch.Tensor], source: str | Path = "the checkpoint") -> None:
    """Raise CheckpointError naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in state_dict.items():
        if torch.is_tensor(tensor) and (tensor.is_floating_point() or tensor.is_complex()):
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise CheckpointError(
                    f"{source} has non-finite weights (NaN or inf) in {name!r} ({bad} of {tensor.numel()} values): "
                    "the training run diverged or the file was damaged, so nothing is evaluated; retrain it "
                    "(e.g. with a lower --lr)"
                )


def _check_shapes(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """Compare the state dict with the model its config describes, built on the meta device (no memory).

    The config names the architecture; a file may not make the loader allocate a model its weights
    do not fill, so names and shapes must agree before the real model is built.
    """
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    except ERSMError:
        raise
    except Exception:  # noqa: BLE001 - a backbone that cannot be built on meta: load_state_dict still checks
        return
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {[k[:80] for k in unexpected[:3]]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (first: {k!r} is {tuple(state[k].shape)}, "
                         f"the model has {expected[k]})")
        raise CheckpointError(
            f"{path}: weights do not match the model its config describes ({config.backbone}, {config.variant}): "
            + "; ".join(parts)
        )


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (eval mode, CPU) with its config, classes and provenance."""
    path = Path(path)
    payload = _read(path)
    check_finite_weights(payload["state_dict"], path)
    try:
        config = ModelConfig.from_dict(dict(payload["config"], pretrained=False))
    except (TypeError, ERSMError) as err:
        raise CheckpointError(f"{path} has an invalid model config: {err}") from None
    _check_shapes(path, config, payload["state_dict"])
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model its config describes: {str(err)[:300]}") from None
    model.eval()
    return LoadedCheckpoint(
        model=model,
        config=config,
        class_names=list(payload["class_names"]),
        provenance=dict(payload["provenance"]),
        path=path,
        sha256=file_sha256(path),
    )
