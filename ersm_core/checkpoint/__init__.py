"""Checkpoints: config, state dict, class names and provenance in one file (SPEC §6).

Two formats, one entry point. ``.pt`` (:mod:`~ersm_core.checkpoint.pt`): ``torch.save`` of plain
types and tensors, read with ``weights_only=True`` after a check of the zip's headers.
``.safetensors`` (:mod:`~ersm_core.checkpoint.safetensors`): the tensors, with the config,
class names and provenance as JSON in the file's metadata. :func:`save_checkpoint` picks the
format from the suffix; :func:`load_checkpoint` from the file's first bytes. Neither ever runs
code from the file, and both pass what they read through the same checks
(:mod:`~ersm_core.checkpoint.checks`) before a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ersm_core.checkpoint.checks import (LIMITS, check_finite_weights, check_payload, check_state_tensors,
                                         check_tensors)
from ersm_core.checkpoint.pt import FORMAT_VERSION, MAGIC, check_archive, quiet_load, read_pt, write_pt
from ersm_core.checkpoint.safetensors import SUFFIX, looks_like_safetensors, read_safetensors, write_safetensors
from ersm_core.errors import CheckpointError, ERSMError
from ersm_core.files import file_sha256
from ersm_core.model import ERSMModel, ModelConfig, build_model
from ersm_core.plain import to_plain
from ersm_core.versions import versions

__all__ = [
    "FORMAT_VERSION", "LIMITS", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "read_payload",
    "is_checkpoint_file", "checkpoint_format", "check_finite_weights", "check_state_tensors", "check_archive",
    "quiet_load", "versions", "convert_checkpoint",
]

_REQUIRED = ("format", "format_version", "config", "state_dict", "class_names", "provenance")
_quiet_load = quiet_load  # the name ersm_core.backbones used before the split
_check_tensors = check_tensors


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


def checkpoint_format(path: str | Path) -> str:
    """'safetensors' for a ``.safetensors`` name, else 'pt' (the format :func:`save_checkpoint` writes)."""
    return "safetensors" if Path(path).suffix.lower() == SUFFIX else "pt"


def make_payload(model: ERSMModel, class_names: list[str], provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint's content as plain types and CPU tensors (either format writes it)."""
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a model with {model.config.num_classes} classes")
    return {
        "format": MAGIC,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "class_names": [str(c) for c in class_names],
        "provenance": to_plain({"versions": versions(), **(provenance or {})}),
    }


def write_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a payload atomically in the format the suffix names (``.safetensors``, else ``.pt``)."""
    path = Path(path)
    return write_safetensors(path, payload) if checkpoint_format(path) == "safetensors" else write_pt(path, payload)


def save_checkpoint(
    path: str | Path,
    model: ERSMModel,
    class_names: list[str],
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename); the suffix picks the format."""
    return write_payload(path, make_payload(model, class_names, provenance))


def is_checkpoint_file(path: str | Path) -> bool:
    """True when ``path`` is a file holding an ersm-eval checkpoint of either format (read as data)."""
    path = Path(path)
    try:
        if looks_like_safetensors(path):
            from ersm_core.checkpoint.safetensors import read_safetensors_header

            return read_safetensors_header(path)[1].get("format") == MAGIC
        check_archive(path)  # no compressed or overlapping records, no plain pickle
        payload = quiet_load(path, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not a checkpoint
        return False
    return isinstance(payload, dict) and payload.get("format") == MAGIC


def read_payload(path: str | Path) -> dict[str, Any]:
    """The checked content of a checkpoint of either format (the first bytes decide which), nothing built."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); was the training run interrupted?")
    if looks_like_safetensors(path) or (checkpoint_format(path) == "safetensors" and not _is_zip(path)):
        payload = read_safetensors(path)
    else:
        payload = read_pt(path)
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is missing the keys {missing}; the file is damaged or incomplete")
    check_payload(path, payload)
    return payload


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"PK"


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
    """Rebuild the model of a checkpoint (``.pt`` or ``.safetensors``; eval mode, CPU) with its config, classes and provenance."""
    path = Path(path)
    payload = read_payload(path)
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


def convert_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Rewrite ``source`` in the format ``target``'s suffix names (same tensors, config, class names).

    The source is read and rebuilt as :func:`load_checkpoint` does (every check applies); its
    provenance is kept, with ``converted_from`` (path, sha256) added.
    """
    loaded = load_checkpoint(source)  # every check, and the model builds
    payload = read_payload(source)  # the stored config as written (load_checkpoint turns 'pretrained' off)
    payload["provenance"] = {**payload["provenance"],
                             "converted_from": {"path": str(source), "sha256": loaded.sha256}}
    payload["state_dict"] = {k: v.contiguous() for k, v in payload["state_dict"].items()}
    return write_payload(target, payload)
