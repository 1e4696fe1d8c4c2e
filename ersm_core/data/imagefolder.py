"""Image folders in torchvision's ``ImageFolder`` layout: ``root/<split>/<class>/<image>``.

Class indices come from the sorted union of class folders of both splits, so
``train`` and ``test`` agree even when one split lacks a class. No masks or boxes.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem, open_image
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError

__all__ = ["ImageFolderDataset"]

_SPLITS = ("train", "test")
_LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (" + ", ".join(IMG_EXTENSIONS) + ")"


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


class ImageFolderDataset(ERSMDataset):
    """Labelled images from ``root/<split>/<class>/<image>``.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        split: ``train`` or ``test``.
        transform: geometry and normalization.
    """

    name = "imagefolder"

    def __init__(self, root: Path, split: str, transform: ImageTransform) -> None:
        super().__init__(split, transform)
        folder = root / split
        if not folder.is_dir():
            raise DatasetError(f"image folder split not found: {folder} does not exist; expected {_LAYOUT}")
        present = _class_folders(folder)
        if not present:
            raise DatasetError(f"no class folders in {folder}; expected {_LAYOUT}")
        self.root = root
        self.classes = sorted(set(present).union(*(_class_folders(root / s) for s in _SPLITS if s != split)))
        class_to_idx = {c: i for i, c in enumerate(self.classes) if c in present}
        try:
            samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
        except (FileNotFoundError, ValueError) as err:  # a class folder without images
            raise DatasetError(f"{err} (in {folder}; expected {_LAYOUT})") from None
        self.samples = [(Path(p), int(y)) for p, y in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> RawItem:
        path, label = self.samples[index]
        return RawItem(image=open_image(path), label=label)

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.root / self.split)}


@DATASETS.register("imagefolder")
def build_imagefolder(root: Path | None, split: str, transform: ImageTransform, **options) -> ImageFolderDataset:
    """Build an image-folder dataset from ``root``; no options."""
    if options:
        raise DatasetError(f"dataset 'imagefolder' takes no options, got {sorted(options)}; valid options: none")
    if root is None:
        raise DatasetError(f"dataset 'imagefolder' needs a data folder (--data-root) laid out as {_LAYOUT}")
    return ImageFolderDataset(Path(root), split, transform)
