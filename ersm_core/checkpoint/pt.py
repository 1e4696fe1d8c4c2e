"""The ``.pt`` checkpoint format: ``torch.save`` of plain types and tensors, read as data only.

Written with ``torch.save`` holding only plain types and tensors and read with
``torch.load(..., weights_only=True)`` after :func:`check_archive` has checked the zip's
headers, so loading a stranger's file never runs pickled code and never inflates a
compressed record.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ersm_core.checkpoint.checks import LIMITS
from ersm_core.errors import CheckpointError
from ersm_core.files import ZipRecordError, atomic_path, checked_zip_records

__all__ = ["MAGIC", "FORMAT_VERSION", "check_archive", "quiet_load", "read_pt", "write_pt"]

MAGIC = "ersm-eval checkpoint"
FORMAT_VERSION = 1


def write_pt(path: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` the payload atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def quiet_load(path: str | Path, mmap: bool = False) -> Any:
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
        records = checked_zip_records(path)
    except ZipRecordError as err:
        record = err.record
        if err.reason == "compressed":
            raise CheckpointError(
                f"refused to load {path}: its record {record.filename!r} is compressed ({record.compress_size} bytes "
                f"that would inflate to {record.file_size}); torch.save never compresses, so the file was "
                "altered (a zip bomb?)"
            ) from None
        if err.reason == "size":
            raise CheckpointError(
                f"refused to load {path}: its record {record.filename!r} claims {record.file_size} bytes that the "
                f"{size}-byte file does not hold; the file is damaged or was altered"
            ) from None
        raise CheckpointError(
            f"refused to load {path}: its records claim more bytes in all than the file's {size} (records "
            "overlap); the file is damaged or was altered"
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable {what} (truncated or another kind of file?): {err}") from None
    if len(records) > LIMITS["archive_records"]:
        raise CheckpointError(f"{path} is not a valid {what}: its archive holds {len(records)} records (at most {LIMITS['archive_records']})")


def read_pt(path: Path) -> dict[str, Any]:
    """The payload of a ``.pt`` checkpoint (format marker and version checked), as data only."""
    check_archive(path)
    try:
        payload = quiet_load(path)
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
    if not isinstance(payload, dict) or payload.get("format") != MAGIC:
        raise CheckpointError(
            f"{path} is not an ersm-eval checkpoint (no '{MAGIC}' marker); train one with `ersm-eval train` "
            "or pass a backbone state dict with --weights instead"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, newer than this ersm-eval understands "
            f"({FORMAT_VERSION}); upgrade ersm-eval"
        )
    return payload
