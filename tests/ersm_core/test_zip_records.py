"""checked_zip_records: the one check of a zip archive's declared sizes (checkpoints and maps.npz)."""

from __future__ import annotations

import struct
import zipfile

import pytest

from ersm_core.files import DEFLATE_MAX_RATIO, ZipRecordError, checked_zip_records


def _zip(path, compression=zipfile.ZIP_STORED, data=b"abcdefgh" * 16):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("a.npy", data)
        zf.writestr("b.npy", b"xyz")
    return path


def _declare(path, name: bytes, size: int) -> None:
    """Rewrite the central directory's uncompressed size of record ``name`` (the local header is left)."""
    raw = bytearray(path.read_bytes())
    start = 0
    while True:
        start = raw.index(b"PK\x01\x02", start)
        name_len = struct.unpack_from("<H", raw, start + 28)[0]
        if bytes(raw[start + 46 : start + 46 + name_len]) == name:
            struct.pack_into("<I", raw, start + 24, size)
            break
        start += 4
    path.write_bytes(bytes(raw))


def test_stored_records_pass_and_are_listed(tmp_path):
    records = checked_zip_records(_zip(tmp_path / "a.zip"))
    assert [(r.filename, r.file_size) for r in records] == [("a.npy", 128), ("b.npy", 3)]


def test_deflate_is_refused_unless_allowed_and_then_bounded(tmp_path):
    path = _zip(tmp_path / "d.zip", zipfile.ZIP_DEFLATED, data=bytes(4096))
    with pytest.raises(ZipRecordError) as err:
        checked_zip_records(path)
    assert err.value.reason == "compressed" and err.value.record.filename == "a.npy"
    assert [r.filename for r in checked_zip_records(path, allow_deflate=True)] == ["a.npy", "b.npy"]
    record = checked_zip_records(path, allow_deflate=True)[0]
    _declare(path, b"a.npy", DEFLATE_MAX_RATIO * record.compress_size + 1025)  # one byte past the ratio
    with pytest.raises(ZipRecordError) as err:
        checked_zip_records(path, allow_deflate=True)
    assert err.value.reason == "size" and err.value.record.filename == "a.npy"


def test_a_stored_record_that_declares_more_than_it_stores_is_refused(tmp_path):
    path = _zip(tmp_path / "s.zip")
    _declare(path, b"b.npy", 1 << 30)  # 1 GiB claimed for 3 stored bytes
    with pytest.raises(ZipRecordError) as err:
        checked_zip_records(path)
    assert err.value.reason == "size" and err.value.record.file_size == 1 << 30


def test_not_a_zip_is_the_zip_modules_error(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(zipfile.BadZipFile):
        checked_zip_records(path)
