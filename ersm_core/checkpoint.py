"""Checkpoints: one file with config, state dict, class names and provenance (SPEC §6).

Files are written with ``torch.save`` holding only plain types and tensors and
read with ``torch.load(..., weights_only=True)``, so loading a stranger's file
never runs pickled code.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ersm_core.errors import CheckpointError, ERSMError
from ersm_core.model import ERSMModel, ModelConfig, build_model

__all__ = ["FORMAT_VERSION", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "file_sha256", "versions"]

FORMAT_VERSION = 1
_MAGIC = "ersm-eval checkpoint"
_REQUIRED = ("format", "format_version", "config", "state_dict", "class_names", "provenance")


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


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    return payload


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (eval mode, CPU) with its config, classes and provenance."""
    path = Path(path)
    payload = _read(path)
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
