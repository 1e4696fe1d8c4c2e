"""Writing files atomically, with the permissions the user's umask asks for.

The one home of "write to a temporary name in the same folder, then rename":
checkpoints, history CSVs, cache chunks and reports all go through
:func:`atomic_path` (or :func:`atomic_write_bytes`), so a reader never sees a
half-written file under the final name, and an interrupted write leaves nothing
behind. ``tempfile`` creates private files (mode 0600) and folders (0700); the
helpers here give them the modes an ordinary ``open``/``mkdir`` would have,
0666 and 0777 less the umask. ``ersm_eval.output`` re-exports them for the
output folders of evaluation runs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

__all__ = ["current_umask", "file_mode", "dir_mode", "apply_umask", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "file_sha256",
           "NpyHeader", "read_npy_header", "ZipRecordError", "DEFLATE_MAX_RATIO", "checked_zip_records"]


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new file: 0666 less the umask (what ``open(path, 'w')`` gives)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new folder: 0777 less the umask (what ``mkdir`` gives)."""
    return 0o777 & ~current_umask()


def apply_umask(path: str | Path) -> None:
    """Give a file or folder made by ``tempfile`` (0600/0700) the mode the umask asks for."""
    path = Path(path)
    os.chmod(path, dir_mode() if path.is_dir() else file_mode())


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path``.

    Write to the yielded path (``torch.save``, ``DataFrame.to_csv``, ...). When the
    block ends normally the file gets the umask's mode and is renamed onto
    ``path`` in one step; when it raises (error, Ctrl-C) the temporary file is
    removed and ``path`` is untouched. The parent folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares, read before any of the array's data."""

    shape: tuple[int, ...]
    dtype: "numpy.dtype"  # noqa: F821 - numpy is imported lazily
    fortran_order: bool
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        """The data size the header claims (shape × item size)."""
        total = self.dtype.itemsize
        for dim in self.shape:
            total *= int(dim)
        return total

    @property
    def plain_numbers(self) -> bool:
        """False for object, structured and sub-array dtypes."""
        return not (self.dtype.hasobject or self.dtype.fields is not None or self.dtype.subdtype is not None)


def read_npy_header(fh: IO[bytes], max_header_size: int = 10_000) -> NpyHeader:
    """The header of the ``.npy`` stream ``fh`` (positioned at its start), read without its data.

    Raises ValueError for a stream that is not a version 1.0 or 2.0 ``.npy`` header (numpy's own
    parsing errors included), so callers turn one exception into their message; a stranger's
    header therefore never sizes memory before its claim is checked.
    """
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fh)
        read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = read(fh, max_header_size=max_header_size)
    except (EOFError, SyntaxError, TypeError, OSError) as err:
        raise ValueError(str(err) or type(err).__name__) from None
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran), fh.tell())


# -- zip archives (torch.save's .pt files, numpy's .npz) ---------------------------------------------

DEFLATE_MAX_RATIO = 1100  # deflate expands at most ~1032:1, so a record's declared size cannot exceed this


class ZipRecordError(ValueError):
    """A zip archive whose records claim what its bytes cannot back.

    ``reason`` is ``"compressed"`` (a compression the caller does not accept), ``"size"``
    (``record`` declares more bytes than are stored for it, or lies past the file's end) or
    ``"overlap"`` (the records claim more bytes in all than the file holds; ``record`` is None).
    """

    def __init__(self, reason: str, record: zipfile.ZipInfo | None) -> None:
        self.reason = reason
        self.record = record
        name = f"record {record.filename!r}" if record is not None else "records"
        super().__init__(f"{name}: {reason}")


def checked_zip_records(path: str | Path, allow_deflate: bool = False) -> list[zipfile.ZipInfo]:
    """The records of a zip archive, from its central directory alone (no record is read), after
    checking that every declared size is backed by the file's bytes.

    A STORED record must declare exactly the bytes it stores; a DEFLATED one (only with
    ``allow_deflate``) at most :data:`DEFLATE_MAX_RATIO` times them; any other compression is
    refused. Every record must end inside the file and the records together may not claim more
    than the file holds. So a record's declared size can never size memory by itself (a zip bomb).

    Raises:
        ZipRecordError: on the first record that breaks a rule.
        zipfile.BadZipFile, OSError: when the file is not a readable zip archive.
    """
    size = Path(path).stat().st_size
    with zipfile.ZipFile(path) as archive:
        records = archive.infolist()
    total = 0
    for record in records:
        if record.compress_type == zipfile.ZIP_STORED:
            backed = record.file_size == record.compress_size
        elif allow_deflate and record.compress_type == zipfile.ZIP_DEFLATED:
            backed = record.file_size <= DEFLATE_MAX_RATIO * record.compress_size + 1024
        else:
            raise ZipRecordError("compressed", record)
        if not backed or record.header_offset + record.compress_size > size:
            raise ZipRecordError("size", record)
        total += record.compress_size
    if total > size:
        raise ZipRecordError("overlap", None)
    return records
