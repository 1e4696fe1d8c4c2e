"""Oxford-IIIT Pets (Parkhi et al., 2012) through torchvision's ``OxfordIIITPet`` index, ``download=False``.

37 cat and dog breeds. The object mask comes from the trimap (1 = pet, 2 =
background, 3 = border; pet and border count as object) and the box is the
mask's bounding box. Nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem, open_image, without_download_advice
from ersm_core.data.boxes import bounding_box
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError

__all__ = ["OxfordPets", "trimap_to_mask"]

_FOLDER = "oxford-iiit-pet"
_SPLITS = {"train": "trainval", "test": "test"}
_LAYOUT = (
    "oxford-iiit-pet/images/<name>.jpg, oxford-iiit-pet/annotations/trainval.txt, "
    "oxford-iiit-pet/annotations/test.txt and oxford-iiit-pet/annotations/trimaps/<name>.png"
)
_SOURCE = (
    "Oxford-IIIT Pets comes from https://www.robots.ox.ac.uk/~vgg/data/pets/; download and extract "
    "images.tar.gz and annotations.tar.gz into oxford-iiit-pet/ yourself and pass the folder holding it "
    "with --data-root (nothing is downloaded at run time)"
)


_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*_[0-9]+$")  # e.g. american_bulldog_10


def check_split_file(path: Path) -> None:
    """Refuse a split file (annotations/trainval.txt or test.txt) that would mislabel or escape.

    Each line must hold four fields: an image id (``<breed>_<number>``, no path parts), a
    class id from 1, a species id (1 or 2) and a breed id. One breed must keep one class
    id. The message names the file and the line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"Oxford-IIIT Pets split file {path} cannot be read as UTF-8 text ({err})") from None
    breeds: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path} line {number}"
        if len(fields) != 4:
            raise DatasetError(f"{where}: expected 4 fields (image id, class id, species, breed id), got {len(fields)}")
        image_id, label, species = fields[0], fields[1], fields[2]
        if not _IMAGE_ID.match(image_id):
            raise DatasetError(f"{where}: image id {image_id!r} is not of the form <breed>_<number> (no folders)")
        if not (label.isdigit() and 1 <= int(label) <= 10_000) or species not in ("1", "2"):
            raise DatasetError(f"{where}: class id {label!r} must be a whole number from 1 and species 1 or 2")
        breed = image_id.rsplit("_", 1)[0]
        if breeds.setdefault(breed, int(label)) != int(label):
            raise DatasetError(f"{where}: breed {breed!r} has class id {label}, but {breeds[breed]} on an earlier line")
    ids = sorted(set(breeds.values()))
    if ids and ids != list(range(1, len(ids) + 1)):
        missing = sorted(set(range(1, max(ids) + 1)) - set(ids))
        raise DatasetError(f"{path}: class ids must run from 1 without gaps; missing {missing[:5]}")


def trimap_to_mask(trimap: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
    """Trimap (1 = pet, 2 = background, 3 = border) → ("L" mask, 255 = pet or border; its box or None)."""
    values = np.asarray(trimap.convert("L") if trimap.mode not in ("L", "P") else trimap)
    obj = (values == 1) | (values == 3)
    return Image.fromarray(obj.astype(np.uint8) * 255, mode="L"), bounding_box(obj)


class OxfordPets(ERSMDataset):
    """Oxford-IIIT Pets with trimap masks.

    Args:
        root: the folder holding ``oxford-iiit-pet/`` (or ``oxford-iiit-pet`` itself).
        split: ``train`` (torchvision's ``trainval``) or ``test``.
        transform: geometry and normalization.
    """

    name = "pets"
    has_masks = True
    has_boxes = True

    def __init__(self, root: Path, split: str, transform: ImageTransform) -> None:
        super().__init__(split, transform)
        if root.name == _FOLDER and not (root / _FOLDER).is_dir():
            root = root.parent
        folder = root / _FOLDER
        split_file = folder / "annotations" / f"{_SPLITS[split]}.txt"
        if split_file.is_file():  # a missing one is reported below with the expected layout
            check_split_file(split_file)
        try:
            index = OxfordIIITPet(str(root), split=_SPLITS[split], target_types=["category", "segmentation"], download=False)
        except (RuntimeError, OSError, ValueError) as err:  # not found, missing or malformed split file
            raise DatasetError(
                f"Oxford-IIIT Pets not found or unreadable in {folder} ({without_download_advice(err)}): expected {_LAYOUT}. {_SOURCE}."
            ) from None
        if not (folder / "annotations" / "trimaps").is_dir():
            raise DatasetError(
                f"Oxford-IIIT Pets in {folder} has no annotations/trimaps/ folder: expected {_LAYOUT}. {_SOURCE}."
            )
        self.root = root
        self.classes = list(index.classes)
        self.files = [Path(p) for p in index._images]
        self.trimaps = [Path(p) for p in index._segs]
        self.labels = [int(y) for y in index._labels]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> RawItem:
        image = open_image(self.files[index])
        mask, box = trimap_to_mask(open_image(self.trimaps[index]))
        if mask.size != image.size:
            raise DatasetError(f"trimap {self.trimaps[index]} is {mask.size}, its image {self.files[index]} is {image.size}")
        return RawItem(image=image, label=self.labels[index], mask=mask, box=box)

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.root / _FOLDER)}

    def source_files(self) -> list[Path]:
        split_file = self.root / _FOLDER / "annotations" / f"{_SPLITS[self.split]}.txt"
        return [split_file, *self.files, *self.trimaps]


@DATASETS.register("pets")
def build_pets(root: Path | None, split: str, transform: ImageTransform, **options) -> OxfordPets:
    """Build Oxford-IIIT Pets from ``root`` (the folder holding ``oxford-iiit-pet/``); no options."""
    if options:
        raise DatasetError(f"dataset 'pets' takes no options, got {sorted(options)}; valid options: none")
    if root is None:
        raise DatasetError(f"dataset 'pets' needs a data folder: expected {_LAYOUT}. {_SOURCE}.")
    return OxfordPets(Path(root), split, transform)
