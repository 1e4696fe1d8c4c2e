"""Common dataset item format and the geometric transform shared by image and mask.

Every dataset yields dicts with the same keys so batches collate with the default
collate function:

- ``image``: float tensor [3, S, S], normalized with the model's mean/std;
- ``label``: int class index;
- ``index``: int position in the dataset (seeds random orders and occluders);
- ``mask``: float tensor [S, S], the object mask in [0, 1] (all zeros where unknown);
- ``has_mask``: bool, whether ``mask`` is real;
- ``box``: float tensor [4], object box (x0, y0, x1, y1) in output pixels, or −1s.
"""

from __future__ import annotations

import hashlib
import json
import functools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from torch.utils.data import Dataset
import torchvision.transforms.functional as TF

from ersm_core.data.transforms import resize_crop_geometry, resize_target
from ersm_core.errors import DatasetError

__all__ = ["ImageTransform", "INTERPOLATIONS", "RawItem", "ERSMDataset", "NO_BOX", "open_image", "to_8bit",
           "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "MAX_ASPECT_RATIO", "first_class_difference",
           "without_download_advice"]

MAX_IMAGE_PIXELS = 89_478_485  # width x height above which an image is refused (PIL's decompression-bomb limit)
MAX_IMAGE_SIDE = 65_535  # width or height above which an image is refused (JPEG's own limit)
MAX_ASPECT_RATIO = 100  # longer side / shorter side above which an image is refused (a 1 px strip, not a photo)

NO_BOX = (-1.0, -1.0, -1.0, -1.0)


# image resize filters ImageTransform accepts (masks are always resized with nearest)
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos", "nearest")


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side to ``image_size / crop_pct``, centre-crop ``image_size``, normalize.

    The same geometry is applied to the object mask (nearest) and box. With
    ``hflip`` (training), images are flipped with probability 0.5 using the torch RNG.
    Where the defaults come from (timm's pretrained config, the authors' crop) is
    :mod:`ersm_core.data.transforms`.
    """

    image_size: int  # output side S
    mean: tuple[float, ...]  # per-channel normalization
    std: tuple[float, ...]
    crop_pct: float = 1.0  # fraction of the resized image kept by the centre crop
    hflip: bool = False  # random horizontal flip (training only)
    interpolation: str = "bilinear"  # image resize filter, one of INTERPOLATIONS

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise DatasetError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise DatasetError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    def describe(self) -> dict[str, Any]:
        """Plain description for provenance: the geometry, filter and normalization applied."""
        return {
            "image_size": int(self.image_size),
            "resize_shorter_side_to": resize_target(self.image_size, self.crop_pct),
            "crop_pct": float(self.crop_pct),
            "crop": "center",
            "interpolation": self.interpolation,
            "mask_interpolation": "nearest",
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "hflip": bool(self.hflip),
        }

    def geometry(self, width: int, height: int) -> tuple[float, int, int, int, int]:
        """Return (scale, resized_w, resized_h, left, top) of the resize + centre crop, in timm's
        arithmetic (:func:`~ersm_core.data.transforms.resize_crop_geometry`)."""
        g = resize_crop_geometry(width, height, self.image_size, self.crop_pct)
        return resize_target(self.image_size, self.crop_pct) / min(width, height), g.width, g.height, g.left, g.top

    def pixels(self, image: Image.Image, mask: Image.Image | None = None, box: tuple[float, ...] | None = None):
        """Geometric part only: returns (uint8 tensor [3,S,S], mask [S,S] or None, box [4]).

        Raises DatasetError, naming the image's file where :func:`open_image` opened it,
        when the resized image would hold more than ``MAX_IMAGE_PIXELS`` pixels (a
        very elongated image resized so that its shorter side fills the crop): the
        resize never allocates beyond the decompression-bomb limit.
        """
        width, height = image.size
        scale, new_w, new_h, left, top = self.geometry(width, height)
        if new_w * new_h > MAX_IMAGE_PIXELS:
            source = image.info.get(_SOURCE_KEY)
            raise DatasetError(
                f"{f'image {source}' if source else 'an image'} is {width}x{height} pixels: resizing its shorter side to "
                f"{resize_target(self.image_size, self.crop_pct)} would make it {new_w}x{new_h} = {new_w * new_h} pixels, "
                f"more than the {MAX_IMAGE_PIXELS} ersm-eval allocates; crop it closer to square or remove it"
            )
        size = self.image_size
        img = image.convert("RGB")
        if (new_w, new_h) != (width, height):
            img = TF.resize(img, [new_h, new_w], interpolation=TF.InterpolationMode(self.interpolation), antialias=True)
        img = TF.pil_to_tensor(img)[:, top : top + size, left : left + size]
        mask_t = None
        if mask is not None:
            m = TF.pil_to_tensor(mask.convert("L").resize((new_w, new_h), Image.NEAREST))[0]
            mask_t = (m[top : top + size, left : left + size].float() / 255.0)
        box_t = torch.tensor(NO_BOX)
        if box is not None:
            x0, y0, x1, y1 = box
            sx, sy = new_w / width, new_h / height
            box_t = torch.tensor(
                [x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top], dtype=torch.float32
            ).clamp(0, size)
        if self.hflip and torch.rand(()) < 0.5:
            img = img.flip(-1)
            if mask_t is not None:
                mask_t = mask_t.flip(-1)
            if box is not None:
                box_t = torch.stack([size - box_t[2], box_t[1], size - box_t[0], box_t[3]])
        return img, mask_t, box_t

    def normalize(self, img_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 [3, S, S] → normalized float."""
        return TF.normalize(img_uint8.float() / 255.0, list(self.mean), list(self.std))


@dataclass
class RawItem:
    """What a dataset's loader returns before the transform."""

    image: Image.Image
    label: int
    mask: Image.Image | None = None  # object mask, white = object
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in image pixels


class ERSMDataset(Dataset):
    """Base class: subclasses set ``classes``, ``has_masks``, ``has_boxes`` and implement
    ``__len__`` and ``load(i) -> RawItem``.
    """

    name: str = "dataset"
    classes: list[str]
    has_masks: bool = False
    has_boxes: bool = False

    def __init__(self, split: str, transform: ImageTransform) -> None:
        self.split = split
        self.transform = transform

    def load(self, index: int) -> RawItem:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain description for provenance."""
        return {"name": self.name, "split": self.split, "size": len(self), "classes": len(self.classes),
                "has_masks": self.has_masks, "has_boxes": self.has_boxes, "transform": self.transform.describe()}

    def source_files(self) -> list[Path]:
        """Every file the dataset reads (images, masks, metadata); empty for data generated in code."""
        return []

    def fingerprint(self) -> str:
        """Hex sha256 identifying the data this object serves.

        Covers the dataset class and :meth:`describe` (name, split, size, class count,
        folder; generator options for synthetic data), the class names, and every
        file of :meth:`source_files` by resolved path, size and modification time:
        two copies of a dataset in two folders, or a file edited in place, give
        different fingerprints. Computed once per object (one ``stat`` per file).
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        head = {"type": type(self).__name__, "describe": self.describe(), "classes": [str(c) for c in self.classes]}
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        for path in self.source_files():
            try:
                st = os.stat(path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
            digest.update(f"\n{os.path.realpath(path)}\0{size}\0{mtime}".encode("utf-8", "surrogateescape"))
        self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def image_uint8(self, index: int) -> np.ndarray:
        """The transformed (resized, cropped, not normalized) image as [S, S, 3] uint8, for figures."""
        raw = self.load(index)
        img, _, _ = ImageTransform(**{**self.transform.__dict__, "hflip": False}).pixels(raw.image)
        return img.permute(1, 2, 0).numpy()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0 or index >= len(self):
            raise IndexError(index)
        raw = self.load(index)
        img, mask, box = self.transform.pixels(raw.image, raw.mask, raw.box)
        has_mask = mask is not None
        if mask is None and raw.box is not None:
            # a box is a coarse object mask
            mask = torch.zeros(img.shape[1:], dtype=torch.float32)
            x0, y0, x1, y1 = box.round().long().tolist()
            mask[y0:y1, x0:x1] = 1.0
            has_mask = True
        if mask is None:
            mask = torch.zeros(img.shape[1:], dtype=torch.float32)
        return {
            "image": self.transform.normalize(img),
            "label": int(raw.label),
            "index": int(index),
            "mask": mask,
            "has_mask": has_mask,
            "box": box,
        }


def to_8bit(image: Image.Image) -> Image.Image:
    """An image in a mode the transform understands (RGB, L or P), scaling high bit depths.

    16-bit greyscale (``I;16*``, and ``I`` as PIL reads 16-bit PNGs) is scaled by
    255/65535, not clipped; float images (``F``) are taken as [0, 1] when their
    maximum is at most 1, else as [0, 255]; other modes are converted to RGB.
    """
    if image.mode in ("RGB", "L", "P"):
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        values = np.rint(np.clip(values, 0, 65535) * (255.0 / 65535.0))
        return Image.fromarray(values.astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return Image.fromarray(np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8), mode="L")
    return image.convert("RGB")


def first_class_difference(expected: list[str], found: list[str], expected_in: str = "the checkpoint",
                           found_in: str = "the dataset") -> str:
    """Where two class lists first differ, in words: ``class 1 is 'cow' in the dataset but 'dog' in the
    checkpoint``, or the first class only one of them has (empty string when they are equal)."""
    for i, (mine, theirs) in enumerate(zip(expected, found)):
        if str(mine) != str(theirs):
            return f"class {i} is {str(theirs)!r} in {found_in} but {str(mine)!r} in {expected_in}"
    n = min(len(expected), len(found))
    if len(found) > n:
        return f"class {n} is {str(found[n])!r} in {found_in} but {expected_in} has no class {n}"
    if len(expected) > n:
        return f"class {n} is {str(expected[n])!r} in {expected_in} but {found_in} has no class {n}"
    return ""


_SOURCE_KEY = "ersm_source"  # Image.info key holding the file an image was opened from (named in errors)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type → samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_size(width: int, height: int, bit_depth: int, colour: int, interlace: int) -> int:
    """Bytes of filtered scanlines (one filter byte per row) a PNG's IDAT stream must inflate to."""
    bits = _PNG_CHANNELS[colour] * bit_depth
    if interlace != 1:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy)
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)
    return total


@functools.lru_cache(maxsize=1 << 16)
def _png_check(path: str, size: int, mtime_ns: int) -> str | None:
    """:func:`_png_short_data` once per file version (path, size, mtime): training reads every
    image once per epoch, and a file whose stream was complete stays so until it changes."""
    return _png_short_data(path)


def _png_short_data(path) -> str | None:
    """Why a PNG's pixel data is short, or None when its IDAT stream holds every row.

    PIL's PNG decoder stops without an error when the compressed stream ends early
    (the missing rows come out black), so the stream is inflated here, in bounded
    pieces and without keeping the output, and its length compared with what the
    header promises. Other damage (bad chunks, a cut file) is left to PIL.
    """
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        head = fh.read(8)
        if len(head) < 8 or head[4:] != b"IHDR":
            return None
        ihdr = fh.read(13)
        if len(ihdr) < 13:
            return None
        width, height, bit_depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
        if colour not in _PNG_CHANNELS:
            return None
        expected = _png_data_size(width, height, bit_depth, colour, interlace)
        fh.seek(4, os.SEEK_CUR)  # IHDR's CRC
        inflater = zlib.decompressobj()
        got = 0
        while got < expected and not inflater.eof:
            head = fh.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                break
            if kind != b"IDAT":
                fh.seek(length + 4, os.SEEK_CUR)
                continue
            left = length
            while left and got < expected and not inflater.eof:
                data = fh.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                while data and got < expected and not inflater.eof:
                    got += len(inflater.decompress(data, 1 << 22))
                    data = inflater.unconsumed_tail
            fh.seek(left + 4, os.SEEK_CUR)
    if got >= expected:
        return None
    if interlace != 1:
        rows = got // (expected // height)
        return f"its PNG pixel data holds {rows} of {height} rows (truncated or corrupt)"
    return f"its PNG pixel data holds {got} of the {expected} bytes its {width}x{height} header needs (truncated or corrupt)"


def open_image(path) -> Image.Image:
    """Open an image file fully, orientation applied, naming the file if it cannot be used.

    Refuses (DatasetError) files that are not images, truncated or corrupt files
    (for PNG also a compressed stream that ends before the last row, which PIL
    decodes silently as black rows), images of more than ``MAX_IMAGE_PIXELS``
    pixels (decompression bombs), wider or taller than ``MAX_IMAGE_SIDE`` or more
    elongated than ``MAX_ASPECT_RATIO`` : 1, before decoding them. The EXIF
    orientation is applied, so a photo stored sideways is seen upright; high bit
    depths are scaled to 8 bits (:func:`to_8bit`). The returned image's
    ``info['ersm_source']`` names the file, for later error messages.
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a library may have switched it on: truncated files must fail
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DatasetError(
                    f"image {path} is {width}x{height} = {width * height} pixels, more than the {MAX_IMAGE_PIXELS} "
                    "ersm-eval decodes (a decompression bomb, or an image far larger than any model input); "
                    "downscale it or remove it"
                )
            if max(width, height) > MAX_IMAGE_SIDE:
                raise DatasetError(
                    f"image {path} is {width}x{height} pixels: a side longer than the {MAX_IMAGE_SIDE} ersm-eval "
                    "decodes; downscale it or remove it"
                )
            if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
                raise DatasetError(
                    f"image {path} is {width}x{height} pixels, more elongated than the {MAX_ASPECT_RATIO}:1 "
                    "ersm-eval accepts (resizing its shorter side to the model's input would take "
                    "far too much memory); crop it or remove it"
                )
            if im.format == "PNG" and isinstance(path, (str, os.PathLike)):
                st = os.stat(path)
                short = _png_check(os.fspath(path), st.st_size, st.st_mtime_ns)
                if short is not None:
                    raise DatasetError(f"corrupt or unreadable image file: {path} ({short})")
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright is None:  # pragma: no cover - older Pillow returned None in place mode only
                upright = im
            out = to_8bit(upright)
            out = out.copy() if out is im else out
            out.info[_SOURCE_KEY] = str(path)
            return out
    except DatasetError:
        raise
    except Image.DecompressionBombError as err:
        raise DatasetError(f"image {path} is too large to decode safely ({err}); downscale it or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise DatasetError(f"corrupt or unreadable image file: {path} ({err})") from None


def without_download_advice(err: Exception) -> str:
    """A torchvision dataset's error message without its advice to pass download=True (ersm-eval never
    downloads: it reads the folder the user names)."""
    text = str(err)
    return "no dataset files there" if "download=True" in text else text
