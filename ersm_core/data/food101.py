"""Food-101 (Bossard et al., 2014) through torchvision's ``Food101`` index, ``download=False``.

101 food classes; no object masks or boxes. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import Food101

from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem, open_image, without_download_advice
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError

__all__ = ["Food101Dataset"]

_FOLDER = "food-101"
_LAYOUT = "food-101/images/<class>/<id>.jpg, food-101/meta/train.json, food-101/meta/test.json and food-101/meta/classes.txt"
_SOURCE = (
    "Food-101 comes from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/; download and extract "
    "food-101.tar.gz yourself and pass the folder holding food-101/ with --data-root "
    "(nothing is downloaded at run time)"
)


class Food101Dataset(ERSMDataset):
    """Food-101 images and labels from torchvision's index.

    Args:
        root: the folder holding ``food-101/`` (or ``food-101`` itself).
        split: ``train`` or ``test``.
        transform: geometry and normalization.
    """

    name = "food101"

    def __init__(self, root: Path, split: str, transform: ImageTransform) -> None:
        super().__init__(split, transform)
        if root.name == _FOLDER and not (root / _FOLDER).is_dir():
            root = root.parent
        try:
            index = Food101(str(root), split=split, download=False)
        except (RuntimeError, OSError, ValueError, TypeError, AttributeError, KeyError) as err:
            # not found, missing, unreadable or malformed meta json (wrong types inside)
            raise DatasetError(
                f"Food-101 not found or unreadable in {root / _FOLDER} ({without_download_advice(err)}): expected {_LAYOUT}. {_SOURCE}."
            ) from None
        self.root = root
        self.classes = list(index.classes)
        self.files = [Path(p) for p in index._image_files]
        self.labels = [int(y) for y in index._labels]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> RawItem:
        return RawItem(image=open_image(self.files[index]), label=self.labels[index])

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.root / _FOLDER)}

    def source_files(self) -> list[Path]:
        meta = self.root / _FOLDER / "meta"
        return [meta / "classes.txt", meta / f"{self.split}.json", *self.files]


@DATASETS.register("food101")
def build_food101(root: Path | None, split: str, transform: ImageTransform, **options) -> Food101Dataset:
    """Build Food-101 from ``root`` (the folder holding ``food-101/``); no options."""
    if options:
        raise DatasetError(f"dataset 'food101' takes no options, got {sorted(options)}; valid options: none")
    if root is None:
        raise DatasetError(f"dataset 'food101' needs a data folder: expected {_LAYOUT}. {_SOURCE}.")
    return Food101Dataset(Path(root), split, transform)
