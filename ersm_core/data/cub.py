"""CUB-200-2011: Caltech-UCSD Birds (Wah et al., 2011), read from its own folder layout.

Boxes come from ``bounding_boxes.txt``; object masks from the optional
``segmentations/`` folder (distributed separately), else the base class turns
the box into a coarse mask. Nothing is downloaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem, open_image
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError

__all__ = ["CUB200", "find_cub_folder"]

_FOLDER = "CUB_200_2011"
_FILES = ("images.txt", "train_test_split.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt")
_SOURCE = (
    "CUB-200-2011 comes from the Caltech-UCSD Birds-200-2011 site "
    "(https://www.vision.caltech.edu/datasets/cub_200_2011/); download and extract it yourself "
    "and pass its folder with --data-root (nothing is downloaded at run time)"
)


def find_cub_folder(root: Path | None) -> Path:
    """The ``CUB_200_2011`` folder: ``root`` itself or ``root/CUB_200_2011``."""
    if root is None:
        raise DatasetError(f"dataset 'cub' needs a data folder. {_SOURCE}.")
    root = Path(root)
    for folder in (root, root / _FOLDER):
        if (folder / "images").is_dir() and all((folder / f).is_file() for f in _FILES):
            return folder
    looked = root / _FOLDER if (root / _FOLDER).is_dir() else root
    missing = [f for f in ("images/", *_FILES) if not (looked / f.rstrip("/")).exists()]
    raise DatasetError(
        f"CUB-200-2011 not found in {looked} (also looked in {root / _FOLDER}): expected the folder images/ "
        f"and the files {', '.join(_FILES)}, optionally segmentations/; missing: {', '.join(missing)}. {_SOURCE}."
    )


def _read_table(path: Path, types: tuple[type, ...], rest_is_text: bool = False,
                lines: dict[int, int] | None = None) -> dict[int, tuple]:
    """Read ``id field ...`` lines into {id: fields}; a bad line raises naming file and line.

    ``lines``, when given, receives {id: line number} for later messages.
    """
    table: dict[int, tuple] = {}
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(
                f"{path} is not UTF-8 text (line {number}, byte {err.start + 1} of the line: {err.reason}); "
                "save it as UTF-8 or restore the original file"
            ) from None
        if not line.strip():
            continue
        parts = line.split(maxsplit=len(types)) if rest_is_text else line.split()
        if len(parts) != len(types) + 1:
            raise DatasetError(
                f"malformed line {number} in {path}: expected {len(types) + 1} fields (id "
                f"{' '.join(t.__name__ for t in types)}), got {line.strip()!r}"
            )
        try:
            key = int(parts[0])
            fields = tuple(t(p) for t, p in zip(types, parts[1:]))
        except ValueError:
            raise DatasetError(f"malformed line {number} in {path}: cannot read {line.strip()!r}") from None
        if key in table:
            raise DatasetError(f"malformed line {number} in {path}: id {key} appears twice")
        table[key] = fields
        if lines is not None:
            lines[key] = number
    return table


def _check_box(path: Path, line: int, box: tuple[float, float, float, float]) -> None:
    """A box ``x y width height`` must be finite with a positive width and height."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        raise DatasetError(f"malformed line {line} in {path}: the box {box} is not finite (NaN or inf)")
    if w <= 0 or h <= 0:
        raise DatasetError(
            f"malformed line {line} in {path}: the box has width {w} and height {h}; both must be positive "
            "(x y width height, not x0 y0 x1 y1 with the corners swapped)"
        )


def _safe_relpath(path: Path, line: int, relpath: str) -> str:
    """An image path of images.txt must stay inside images/ (no absolute path, no '..')."""
    parts = Path(relpath).parts
    if Path(relpath).is_absolute() or ".." in parts:
        raise DatasetError(f"malformed line {line} in {path}: image path {relpath!r} leaves the images/ folder")
    return relpath


def _class_name(raw: str) -> str:
    """``001.Black_footed_Albatross`` → ``Black footed Albatross``."""
    return re.sub(r"^\d+\.", "", raw.strip()).replace("_", " ")


class CUB200(ERSMDataset):
    """CUB-200-2011 birds, 200 classes, with boxes and (when present) segmentation masks.

    Args:
        folder: the ``CUB_200_2011`` folder (see :func:`find_cub_folder`).
        split: ``train`` or ``test`` (from ``train_test_split.txt``).
        transform: geometry and normalization.
    """

    name = "cub"
    has_boxes = True

    def __init__(self, folder: Path, split: str, transform: ImageTransform) -> None:
        super().__init__(split, transform)
        self.folder = folder
        lines: dict[str, dict[int, int]] = {name: {} for name in ("images", "labels", "classes", "boxes")}
        images = _read_table(folder / "images.txt", (str,), rest_is_text=True, lines=lines["images"])
        is_train = _read_table(folder / "train_test_split.txt", (int,))
        labels = _read_table(folder / "image_class_labels.txt", (int,), lines=lines["labels"])
        classes = _read_table(folder / "classes.txt", (str,), rest_is_text=True, lines=lines["classes"])
        boxes = _read_table(folder / "bounding_boxes.txt", (float, float, float, float), lines=lines["boxes"])

        class_ids = sorted(classes)
        expected = list(range(1, len(class_ids) + 1))
        if class_ids != expected:
            gap = next(i for i, (got, want) in enumerate(zip(class_ids, expected)) if got != want)
            raise DatasetError(
                f"{folder / 'classes.txt'}: class ids must run 1..{len(class_ids)} without gaps, but id "
                f"{expected[gap]} is missing (line {lines['classes'][class_ids[gap]]} has id {class_ids[gap]}); "
                "labels are positions in this list, so a gap would shift every later class"
            )
        self.classes = [_class_name(classes[k][0]) for k in class_ids]
        for path, table in (("train_test_split.txt", is_train), ("image_class_labels.txt", labels), ("bounding_boxes.txt", boxes)):
            missing = sorted(set(images) - set(table))
            if missing:
                raise DatasetError(f"{folder / path} has no line for image id(s) {missing[:5]} listed in images.txt")

        seg_root = next((f for f in (folder / "segmentations", folder.parent / "segmentations") if f.is_dir()), None)
        self.segmentations = seg_root
        self.has_masks = seg_root is not None

        want = 1 if split == "train" else 0
        self.samples: list[tuple[str, int, tuple[float, float, float, float]]] = []
        for image_id in sorted(images):
            if is_train[image_id][0] not in (0, 1):
                raise DatasetError(
                    f"{folder / 'train_test_split.txt'}: image id {image_id} has split flag {is_train[image_id][0]}; "
                    "use 1 for train and 0 for test"
                )
            if is_train[image_id][0] != want:
                continue
            label = labels[image_id][0]
            if not 1 <= label <= len(self.classes):
                raise DatasetError(
                    f"malformed line {lines['labels'][image_id]} in {folder / 'image_class_labels.txt'}: image id "
                    f"{image_id} has label {label}, outside 1..{len(self.classes)} of classes.txt"
                )
            _check_box(folder / "bounding_boxes.txt", lines["boxes"][image_id], boxes[image_id])
            x, y, w, h = boxes[image_id]
            relpath = _safe_relpath(folder / "images.txt", lines["images"][image_id], images[image_id][0].strip())
            self.samples.append((relpath, label - 1, (x, y, x + w, y + h)))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> RawItem:
        relpath, label, box = self.samples[index]
        image = open_image(self.folder / "images" / relpath)
        mask = None
        if self.segmentations is not None:
            seg = (self.segmentations / relpath).with_suffix(".png")
            if seg.is_file():
                mask = open_image(seg).convert("L")
        return RawItem(image=image, label=label, mask=mask, box=box)

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.folder)}

    def source_files(self) -> list[Path]:
        files = [self.folder / name for name in _FILES]
        for relpath, _, _ in self.samples:
            files.append(self.folder / "images" / relpath)
            if self.segmentations is not None:
                files.append((self.segmentations / relpath).with_suffix(".png"))
        return files


@DATASETS.register("cub")
def build_cub(root: Path | None, split: str, transform: ImageTransform, **options) -> CUB200:
    """Build CUB-200-2011 from ``root`` (the ``CUB_200_2011`` folder or its parent); no options."""
    if options:
        raise DatasetError(f"dataset 'cub' takes no options, got {sorted(options)}; valid options: none")
    return CUB200(find_cub_folder(root), split, transform)
