"""What a checkpoint may hold, checked before anything is built from it (both file formats).

A stranger's file must not make the loader allocate more than its contents justify, nor
build a model from values of the wrong type: :func:`check_payload` checks the config
against :class:`ersm_core.config.ModelConfig`'s fields and :data:`ersm_core.config.MAX_VALUES`,
the class names, the tensors' dtypes and layouts, and the provenance's size and depth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch

from ersm_core.config import MAX_VALUES, MIN_IMAGE_SIZE, ModelConfig, field_kinds
from ersm_core.errors import CheckpointError
from ersm_core.plain import depth_problem

__all__ = ["LIMITS", "WEIGHT_DTYPES", "check_payload", "check_state_tensors", "check_finite_weights", "check_tensors"]

# Bounds on what a checkpoint may ask for; the model's own bounds come from ersm_core.config.MAX_VALUES.
LIMITS = {
    "image_size": MAX_VALUES["image_size"],  # pixels per side
    "num_classes": MAX_VALUES["num_classes"],  # head outputs (must also equal the number of class names and the head's rows)
    "patch_size": MAX_VALUES["patch_size"],
    "block_size": MAX_VALUES["block_size"],  # DropBlock block side on the map
    "class_name_chars": 1_000,  # characters per class name
    "provenance_bytes": 16 * 2**20,  # provenance as JSON
    "provenance_depth": 32,  # nesting of dicts and lists
    "state_dict_entries": 100_000,
    "archive_records": 100_100,  # records in the torch zip (one per tensor storage, plus a few)
    "safetensors_header_bytes": 64 * 2**20,  # the JSON header of a .safetensors file (tensor table + metadata)
}
_LOWEST = {"image_size": MIN_IMAGE_SIZE, "num_classes": 2, "patch_size": 1, "block_size": 1}

# dtypes a state dict may hold: real floating point (weights) and integers (counters such as
# BatchNorm's num_batches_tracked); complex, quantized, bool and float8 tensors are refused.
WEIGHT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64,
                           torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})

Bad = Callable[[str], CheckpointError]


def check_payload(path: Path, payload: dict[str, Any]) -> None:
    """Range-check what the model would be built from (config, tensors, names, provenance), before it is built."""
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
    check_tensors(state, bad)
    if len(names) != config["num_classes"]:
        raise bad(f"it names {len(names)} classes for a model with {config['num_classes']}")
    long = next((c for c in names if len(c) > LIMITS["class_name_chars"]), None)
    if long is not None:
        raise bad(f"a class name has {len(long)} characters (at most {LIMITS['class_name_chars']})")
    head = state.get("head.weight")
    if head is not None and (head.dim() != 2 or head.shape[0] != config["num_classes"]):
        raise bad(f"its head has shape {tuple(head.shape)} for {config['num_classes']} classes")
    if depth_problem(prov, LIMITS["provenance_depth"]):
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


def _check_config(config: dict[str, Any], bad: Bad) -> None:
    """Type and range of every ModelConfig field a checkpoint sets, before ModelConfig sees them.

    The kinds come from ModelConfig's fields, the integer bounds from LIMITS (ersm_core.config's);
    ModelConfig itself then checks how fields relate (ersm_full needs beta > 0, ...).
    """
    if not all(isinstance(k, str) for k in config):
        raise bad("its model config has keys that are not strings")
    for key, kind in field_kinds(ModelConfig).items():
        if key not in config and key != "num_classes":
            continue  # the default
        value = config.get(key)
        if kind == "int":
            low, limit = _LOWEST.get(key, 0), LIMITS.get(key, MAX_VALUES.get(key))
            if not (_is_number(value) and isinstance(value, int) and low <= value <= limit):
                raise bad(f"config {key} = {_short(value)} is not an integer in [{low}, {limit}]")
        elif kind == "float":
            if not _is_number(value):
                raise bad(f"config {key} = {_short(value)} is not a number")
            if not math.isfinite(value):
                raise bad(f"config {key} = {value} is not finite")
        elif kind == "str":
            if not isinstance(value, str):
                raise bad(f"config {key} = {_short(value)} is not a string")
            if len(value) > 256:
                raise bad(f"config {key} is a string of {len(value)} characters (at most 256)")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise bad(f"config {key} = {_short(value)} is not true or false")
        elif kind == "vector":
            _check_vector(key, value, bad)


def _check_vector(key: str, value: Any, bad: Bad) -> None:
    """Empty (the backbone's own) or one finite float per RGB channel."""
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


def check_tensors(state: dict[str, torch.Tensor], bad: Bad) -> None:
    """Every value a plain CPU tensor of a real dtype: no meta, sparse, quantized or complex tensors."""
    for name, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_sparse or tensor.is_quantized or tensor.is_nested:
            raise bad(f"{name!r} is a {str(tensor.layout).removeprefix('torch.')} tensor, not a plain (strided) one")
        if tensor.device.type != "cpu" or tensor.is_meta:
            raise bad(f"{name!r} is a tensor on the {tensor.device.type!r} device, which holds no values")
        if tensor.dtype not in WEIGHT_DTYPES:
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
    check_tensors(state, bad)


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
