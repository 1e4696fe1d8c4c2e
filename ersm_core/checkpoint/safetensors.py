"""The ``.safetensors`` checkpoint format: tensors in the file, config and provenance as JSON metadata.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and byte range, plus a ``__metadata__`` map of strings to strings) and the raw
tensor bytes. An ersm-eval checkpoint keeps its state dict as the tensors and puts
``format``, ``format_version``, and ``config``, ``class_names`` and ``provenance`` (each as
JSON) in ``__metadata__``: one self-contained file that ``safetensors.torch.load_file`` reads
and that cannot hold code. The reader checks the header before any tensor is read: its size
is bounded before it is read, the JSON is parsed defensively, every dtype must be a real
number type, every byte range must match its shape and the ranges must tile the data exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ersm_core.checkpoint.checks import LIMITS
from ersm_core.checkpoint.pt import FORMAT_VERSION, MAGIC
from ersm_core.errors import CheckpointError
from ersm_core.files import atomic_path

__all__ = ["SUFFIX", "looks_like_safetensors", "read_safetensors_header", "read_tensors", "read_safetensors",
           "write_safetensors"]

SUFFIX = ".safetensors"
# safetensors dtype names a state dict may hold (the real floating-point and integer types of WEIGHT_DTYPES)
_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64}
_MAX_DIMS = 8
_METADATA_KEYS = ("format", "format_version", "config", "class_names", "provenance")


def looks_like_safetensors(path: Path) -> bool:
    """True when the file starts like a safetensors file (a plausible header length, then '{')."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= LIMITS["safetensors_header_bytes"]


def read_safetensors_header(path: Path, what: str = "safetensors file") -> tuple[dict[str, Any], dict[str, str]]:
    """(tensor table, metadata) of a safetensors file, checked against the file before any tensor is read."""
    def bad(detail: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid {what}: {detail}; the file is damaged or was altered")

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad("it is shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n > LIMITS["safetensors_header_bytes"] or 8 + n > size:
            raise bad(f"its header claims {n} bytes (the file has {size}; at most {LIMITS['safetensors_header_bytes']})")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad("its __metadata__ is not a map of strings to strings")
    if len(header) > LIMITS["state_dict_entries"]:
        raise bad(f"it holds {len(header)} tensors (at most {LIMITS['state_dict_entries']})")
    _check_table(header, size - 8 - n, bad)
    return header, metadata


def _check_table(table: dict[str, Any], data_size: int, bad) -> None:
    """Dtypes real, shapes plain, byte ranges matching their shapes and tiling the data exactly."""
    ranges = []
    for name, entry in table.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name[:80]!r} has no dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPES:
            raise bad(f"tensor {name[:80]!r} has dtype {str(dtype)[:20]!r}, not a real floating-point or integer type")
        if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise bad(f"tensor {name[:80]!r} has shape {str(shape)[:60]}, not up to {_MAX_DIMS} sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {name[:80]!r} has no [begin, end] byte range")
        numel = 1
        for d in shape:
            numel *= d
        begin, end = offsets
        if not 0 <= begin <= end <= data_size or end - begin != numel * _DTYPES[dtype].itemsize:
            raise bad(f"tensor {name[:80]!r} claims bytes [{begin}, {end}) that do not hold its shape {shape} "
                      f"in the {data_size} bytes of data")
        ranges.append((begin, end))
    position = 0
    for begin, end in sorted(ranges):
        if begin != position:
            raise bad("its tensors' byte ranges overlap or leave gaps")
        position = end
    if position != data_size:
        raise bad(f"its tensors fill {position} of its {data_size} bytes of data")


def read_tensors(path: Path, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a safetensors file whose header passed :func:`read_safetensors_header`."""
    _, metadata = read_safetensors_header(path, what)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError("reading .safetensors needs the 'safetensors' package: pip install safetensors") from None
    try:
        return load_file(str(path)), metadata
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ...: a damaged or foreign file
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable {what}: {first}") from None


def _json_field(path: Path, metadata: dict[str, str], key: str, limit: int) -> Any:
    text = metadata[key]
    if len(text) > limit:
        raise CheckpointError(f"{path} is not a valid ersm-eval checkpoint: its {key} takes {len(text)} bytes (at most {limit})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path} is not a valid ersm-eval checkpoint: its {key} is not valid JSON") from None


def read_safetensors(path: Path) -> dict[str, Any]:
    """The payload (same keys as a ``.pt`` checkpoint's) of a ``.safetensors`` ersm-eval checkpoint."""
    state, metadata = read_tensors(path, "ersm-eval checkpoint (safetensors)")
    if metadata.get("format") != MAGIC:
        raise CheckpointError(
            f"{path} is a safetensors file but not an ersm-eval checkpoint (no '{MAGIC}' in its metadata); "
            "pass a backbone state dict with --weights instead, or train one with `ersm-eval train`"
        )
    missing = [k for k in _METADATA_KEYS if k not in metadata]
    if missing:
        raise CheckpointError(f"{path} is missing the metadata {missing}; the file is damaged or incomplete")
    version = metadata["format_version"]
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version[:20]!r}, newer than this ersm-eval "
                              f"understands ({FORMAT_VERSION}); upgrade ersm-eval")
    small = 4 * 2**20  # config and class names: a few KiB, at most a few MiB for 100 000 names
    return {
        "format": MAGIC,
        "format_version": int(version),
        "config": _json_field(path, metadata, "config", small),
        "class_names": _json_field(path, metadata, "class_names", LIMITS["num_classes"] * (LIMITS["class_name_chars"] + 8)),
        "provenance": _json_field(path, metadata, "provenance", LIMITS["provenance_bytes"]),
        "state_dict": state,
    }


def write_safetensors(path: Path, payload: dict[str, Any]) -> Path:
    """Write the payload as a safetensors file atomically (tensors; the rest as JSON metadata)."""
    from safetensors.torch import save_file

    metadata = {
        "format": MAGIC,
        "format_version": str(payload["format_version"]),
        "config": json.dumps(payload["config"]),
        "class_names": json.dumps(payload["class_names"]),
        "provenance": json.dumps(payload["provenance"]),
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in payload["state_dict"].items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
