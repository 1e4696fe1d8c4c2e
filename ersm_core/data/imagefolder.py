"""Image folders in torchvision's ``ImageFolder`` layout: ``root/<split>/<class>/<image>``.

Class indices come from the sorted union of class folders of both splits, so
``train`` and ``test`` agree even when one split lacks a class. No masks or boxes.
Images are found as torchvision's ``make_dataset`` finds them (symbolic links
followed, sorted), but a link that leads back into a folder already scanned (a
loop), one image file reached by two paths in a split, and two files with
identical bytes in a split are refused with a message naming both paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from ersm_core.data.base import ERSMDataset, ImageTransform, RawItem, open_image
from ersm_core.data.registry import DATASETS
from ersm_core.errors import DatasetError
from ersm_core.files import file_sha256

__all__ = ["ImageFolderDataset"]

_SPLITS = ("train", "test")
_LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (" + ", ".join(IMG_EXTENSIONS) + ")"


def _scan_class(folder: Path) -> list[str]:
    """Image files under one class folder, in ``make_dataset``'s order, refusing link loops."""
    seen: dict[tuple[int, int], str] = {}
    found: list[tuple[str, list[str]]] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise DatasetError(
                f"symbolic link loop in the image folder: {root} leads back to {seen[key]}; remove the link "
                "(each image must be reachable by one path only)"
            )
        seen[key] = root
        found.append((root, files))
    return [os.path.join(root, name) for root, files in sorted(found) for name in sorted(files)
            if has_file_allowed_extension(name, IMG_EXTENSIONS)]


def _check_duplicates(paths: list[str], labels: list[str]) -> None:
    """Refuse an image that appears twice in a split: one file reached by two paths
    (a symbolic or hard link beside the file itself), or two files with identical bytes.

    Only files whose size another file shares are hashed, so a folder of distinct
    photos costs one ``stat`` per file. A file that cannot be stat-ed or read is
    left to :func:`open_image`, which names it and the OS's reason when the image
    is read (``--skip-bad-images`` leaves it out), instead of failing here.
    """
    by_inode: dict[tuple[int, int], int] = {}
    by_size: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:  # a broken link: reported by name when the image is read
            continue
        key = (st.st_dev, st.st_ino)
        if key in by_inode:
            raise DatasetError(
                f"duplicate image: {path} is the same file as {paths[by_inode[key]]} (reached through a link); "
                "each image may appear once, or it is counted twice (and may carry two labels): remove the link"
            )
        by_inode[key] = i
        by_size.setdefault(st.st_size, []).append(i)
    for group in (g for g in by_size.values() if len(g) > 1):
        by_hash: dict[str, int] = {}
        for i in group:
            try:
                digest = file_sha256(paths[i])
            except OSError:
                # unreadable (no permission, I/O error): it cannot be counted twice, and reading it
                # fails naming the file and the reason (or leaves it out with --skip-bad-images)
                continue
            if digest in by_hash:
                j = by_hash[digest]
                labels_note = (f"under two labels ({labels[j]!r} and {labels[i]!r})" if labels[i] != labels[j]
                               else "twice in one class")
                raise DatasetError(
                    f"duplicate image: {paths[i]} has the same bytes as {paths[j]}, so it would be counted "
                    f"{labels_note}; delete one copy"
                )
            by_hash[digest] = i


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
        samples: list[tuple[str, int]] = []
        empty = []
        for name in sorted(class_to_idx):
            files = _scan_class(folder / name)
            if not files:
                empty.append(name)
            samples += [(p, class_to_idx[name]) for p in files]
        if empty:
            raise DatasetError(
                f"no image files in the class folder(s) {', '.join(empty)} of {folder}; expected {_LAYOUT}"
            )
        _check_duplicates([p for p, _ in samples], [self.classes[y] for _, y in samples])
        self.samples = [(Path(p), int(y)) for p, y in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> RawItem:
        path, label = self.samples[index]
        return RawItem(image=open_image(path), label=label)

    def describe(self) -> dict:
        return {**super().describe(), "folder": str(self.root / self.split)}

    def source_files(self) -> list[Path]:
        return [p for p, _ in self.samples]


@DATASETS.register("imagefolder")
def build_imagefolder(root: Path | None, split: str, transform: ImageTransform, **options) -> ImageFolderDataset:
    """Build an image-folder dataset from ``root``; no options."""
    if options:
        raise DatasetError(f"dataset 'imagefolder' takes no options, got {sorted(options)}; valid options: none")
    if root is None:
        raise DatasetError(f"dataset 'imagefolder' needs a data folder (--data-root) laid out as {_LAYOUT}")
    return ImageFolderDataset(Path(root), split, transform)
