"""Checkpoints: one file with config, state dict, class names and provenance (SPEC §6).

Files are written with ``torch.save`` holding only plain types and tensors and
read with ``torch.load(..., weights_only=True)``, so loading a stranger's file
never runs pickled code.
"""

from __future__ import annotations

import json
import math
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ersm_core.errors import CheckpointError, ERSMError
from ersm_core.files import atomic_path, file_sha256
from ersm_core.model import ERSMModel, ModelConfig, build_model

__all__ = [
    "FORMAT_VERSION", "LIMITS", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "is_checkpoint_file",
    "check_finite_weights", "versions",
]

FORMAT_VERSION = 1
_MAGIC = "ersm-eval checkpoint"
_REQUIRED = ("format", "format_version", "config", "state_dict", "class_names", "provenance")

# Bounds on what a checkpoint may ask for, checked before anything is built from it: a
# stranger's file must not make the loader allocate more than its contents justify.
LIMITS = {
    "image_size": 8192,  # pixels per side
    "num_classes": 100_000,  # head outputs (must also equal the number of class names and the head's rows)
    "class_name_chars": 1_000,  # characters per class name
    "patch_size": 1_024,
    "provenance_bytes": 16 * 2**20,  # provenance as JSON
    "provenance_depth": 32,  # nesting of dicts and lists
    "state_dict_entries": 100_000,
}


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


def versions() -> dict[str, str]:
    """Versions of the packages that shape results, for provenance."""
    import numpy
    import timm
    import torchvision

    try:
        from importlib.metadata import version

        own = version("ersm-eval")
    except Exception:  # noqa: BLE001 - running from a source tree
        own = "unknown"
    return {
        "ersm_eval": own,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


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
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not a checkpoint
        return False
    return isinstance(payload, dict) and payload.get("format") == _MAGIC


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); was the training run interrupted?")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
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
    for key, limit, low in (("image_size", LIMITS["image_size"], 8), ("num_classes", LIMITS["num_classes"], 2),
                            ("patch_size", LIMITS["patch_size"], 1)):
        value = config.get(key)
        if value is None and key != "num_classes":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
            raise bad(f"config {key} = {value!r} is not an integer in [{low}, {limit}]")
    for key, value in config.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(f"config {key} = {value} is not finite")
        if isinstance(value, (list, tuple)) and len(value) > 16:
            raise bad(f"config {key} holds {len(value)} values (at most 16)")
        if isinstance(value, str) and len(value) > 256:
            raise bad(f"config {key} is a string of {len(value)} characters (at most 256)")
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


def check_finite_weights(state_dict: dict[str, torch.Tensor], source: str | Path = "the checkpoint") -> None:
    """Raise CheckpointError naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in state_dict.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise CheckpointError(
                    f"{source} has non-finite weights (NaN or inf) in {name!r} ({bad} of {tensor.numel()} values): "
                    "the training run diverged or the file was damaged, so nothing is evaluated; retrain it "
                    "(e.g. with a lower --lr)"
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
