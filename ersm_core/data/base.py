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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
import torchvision.transforms.functional as TF

from ersm_core.errors import DatasetError

__all__ = ["ImageTransform", "RawItem", "ERSMDataset", "NO_BOX", "open_image"]

NO_BOX = (-1.0, -1.0, -1.0, -1.0)


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side to ``image_size / crop_pct``, centre-crop ``image_size``, normalize.

    The same geometry is applied to the object mask (nearest) and box. With
    ``hflip`` (training), images are flipped with probability 0.5 using the torch RNG.
    """

    image_size: int  # output side S
    mean: tuple[float, ...]  # per-channel normalization
    std: tuple[float, ...]
    crop_pct: float = 1.0  # fraction of the resized image kept by the centre crop
    hflip: bool = False  # random horizontal flip (training only)

    def geometry(self, width: int, height: int) -> tuple[float, int, int, int, int]:
        """Return (scale, resized_w, resized_h, left, top) of the resize + centre crop."""
        short = round(self.image_size / self.crop_pct)
        scale = short / min(width, height)
        new_w, new_h = max(self.image_size, round(width * scale)), max(self.image_size, round(height * scale))
        return scale, new_w, new_h, (new_w - self.image_size) // 2, (new_h - self.image_size) // 2

    def pixels(self, image: Image.Image, mask: Image.Image | None = None, box: tuple[float, ...] | None = None):
        """Geometric part only: returns (uint8 tensor [3,S,S], mask [S,S] or None, box [4])."""
        width, height = image.size
        scale, new_w, new_h, left, top = self.geometry(width, height)
        size = self.image_size
        img = TF.resize(image.convert("RGB"), [new_h, new_w], antialias=True) if (new_w, new_h) != (width, height) else image.convert("RGB")
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
                "has_masks": self.has_masks, "has_boxes": self.has_boxes}

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


def open_image(path) -> Image.Image:
    """Open an image file fully, naming the file if it is corrupt."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB") if im.mode not in ("RGB", "L", "P") else im.copy()
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"corrupt or unreadable image file: {path} ({err})") from None
