"""maps.npz of a sparsity run: every member's header checked before anything is loaded.

The gallery images and maps are read only after each array's shape and dtype agree with
each other and with summary.json, and its declared size with the bytes stored, so a damaged
or hostile file is one :class:`~reports.tables.run.ReportError`, never a huge allocation.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ersm_core.files import ZipRecordError, checked_zip_records, read_npy_header
from reports.tables.run import ReportError
from reports.tables.summary_json import is_int

__all__ = ["MAP_KEYS", "MAP_NAMES", "MAPS_MAX_BYTES", "read_maps"]

# maps.npz: required keys, then optional ones (ersm_eval.sparsity)
MAP_KEYS = {"required": ("index", "image", "label", "prediction"), "optional": ("keep", "energy", "cam", "mask")}
MAP_NAMES = ("keep", "energy", "cam")  # the maps of a model (sparsity_summary and localization rows refer to them)

MAPS_MAX_BYTES = 4 * 1024 ** 3  # maps.npz holds a gallery of a few dozen images: megabytes
# maps.npz members: number of dimensions and allowed dtype kinds (b bool, u/i integers, f floats)
_MAP_LAYOUT = {"index": (1, "iu"), "label": (1, "iu"), "prediction": (1, "iu"), "image": (4, "u"),
               "keep": (3, "f"), "energy": (3, "f"), "cam": (3, "f"), "mask": (3, "buif")}


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array of an .npz, from the member headers alone (nothing loaded).

    Each member's declared size must agree with the zip entry's size, and that with the bytes
    actually stored (deflate expands at most ~1000×), so no claim sizes memory by itself.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    try:
        records = checked_zip_records(path, allow_deflate=True)
    except ZipRecordError as err:
        if err.record is None:
            raise ReportError(f"{path}: its arrays claim more bytes than the file holds; the file is damaged "
                              "or not written by ersm-eval") from None
        info = err.record
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if err.reason == "compressed":
            raise ReportError(f"{path}: array {key!r} uses an unsupported compression") from None
        raise ReportError(f"{path}: array {key!r} declares {info.file_size} bytes for "
                          f"{info.compress_size} stored; the file is damaged or not written by ersm-eval") from None
    with zipfile.ZipFile(path) as zf:
        for info in records:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as fh:
                try:
                    header = read_npy_header(fh)
                except ValueError as err:
                    raise ReportError(f"{path}: array {key!r} has no readable .npy header ({err})") from None
            shape, dtype, offset, nbytes = header.shape, header.dtype, header.offset, header.nbytes
            if not header.plain_numbers:
                raise ReportError(f"{path}: array {key!r} has dtype {dtype}, not plain numbers")
            if offset + nbytes != info.file_size:
                raise ReportError(f"{path}: array {key!r} declares shape {list(shape)} ({nbytes} bytes) but holds "
                                  f"{max(info.file_size - offset, 0)} bytes; the file is damaged or was edited")
            total += nbytes
            if total > MAPS_MAX_BYTES:
                raise ReportError(f"{path}: holds more than {MAPS_MAX_BYTES} bytes of arrays, far more than a "
                                  "gallery; the file is damaged or not written by ersm-eval")
            out[key] = (tuple(int(d) for d in shape), dtype)
    return out


def _check_map_headers(path: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]], summary: dict[str, Any]) -> None:
    """Shapes and dtypes of maps.npz against each other and against summary.json, before loading."""
    missing = [k for k in MAP_KEYS["required"] if k not in headers]
    if missing:
        raise ReportError(f"{path}: missing array{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    for key, (ndim, kinds) in _MAP_LAYOUT.items():
        if key in headers:
            shape, dtype = headers[key]
            if dtype.kind not in kinds or (key == "image" and dtype != np.uint8):
                raise ReportError(f"{path}: array {key!r} has dtype {dtype}, expected "
                                  f"{'uint8' if key == 'image' else 'integers' if kinds == 'iu' else 'floats'}")
            if len(shape) != ndim:
                raise ReportError(f"{path}: array {key!r} must have {ndim} dimension(s), found shape {list(shape)}")
    n = headers["index"][0][0]
    limit = summary.get("n_images") if is_int(summary.get("n_images")) else None
    if limit is not None and n > limit:
        raise ReportError(f"{path}: {n} gallery images, but summary.json records {limit} images evaluated")
    image = headers["image"][0]
    if image[-1] != 3 or image[1] != image[2] or not 1 <= image[1] <= 8192:
        raise ReportError(f"{path}: array 'image' must have shape [n, S, S, 3] with S at most 8192, found {list(image)}")
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    grid = model.get("grid") if isinstance(model.get("grid"), list) else None
    for key in ("index", "label", "prediction", "image", "keep", "energy", "cam", "mask"):
        if key not in headers:
            continue
        shape = headers[key][0]
        if shape[0] != n:
            raise ReportError(f"{path}: array {key!r} must hold {n} entries like 'index', found shape {list(shape)}")
        if key in MAP_NAMES and grid is not None and list(shape[1:]) != grid:
            raise ReportError(f"{path}: array {key!r} must hold [n, h, w] maps on the token grid {grid} of summary.json, "
                              f"found shape {list(shape)}")
        if key in MAP_NAMES and not all(1 <= d <= 8192 for d in shape[1:]):
            raise ReportError(f"{path}: array {key!r} has map size {list(shape[1:])}, outside 1 to 8192")
        if key == "mask" and shape[1:] != image[1:3]:
            raise ReportError(f"{path}: array 'mask' must match the image size {list(image[1:3])}, found {list(shape[1:])}")


def read_maps(path: Path, summary: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """maps.npz: every member's header checked (shape, dtype, size against the file and summary.json)
    before anything is loaded, then the values (finite maps, non-negative indices)."""
    try:
        headers = _npz_headers(path)
        _check_map_headers(path, headers, summary or {})
        with np.load(path, allow_pickle=False) as npz:
            maps = {key: npz[key] for key in npz.files if key in _MAP_LAYOUT}
    except ReportError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as err:
        detail = str(err).splitlines()[0] if str(err) else repr(err)
        raise ReportError(f"{path}: not a readable .npz file ({detail})") from None
    for key in ("keep", "energy", "cam", "mask"):
        if key in maps and not np.isfinite(maps[key]).all():
            bad = int(np.flatnonzero(~np.isfinite(maps[key]).reshape(len(maps[key]), -1).all(axis=1))[0])
            raise ReportError(f"{path}: array {key!r} holds NaN or infinite values (gallery image {bad}); "
                              "the file is damaged or was edited, re-run the evaluation")
    for key in ("index", "label", "prediction"):
        if maps[key].size and int(maps[key].min()) < 0:
            raise ReportError(f"{path}: array {key!r} holds a negative value; the file is damaged or was edited")
    return maps

