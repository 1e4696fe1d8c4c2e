"""Datasets on tiny fake folders generated in tmp_path, and the synthetic generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ersm_core.data import DATASETS, ImageTransform, build_dataset
from ersm_core.data.pets import trimap_to_mask
from ersm_core.errors import DatasetError

SIZE = 32


@pytest.fixture
def transform() -> ImageTransform:
    return ImageTransform(image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3)


def write_image(path: Path, width: int = 48, height: int = 40, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def check_item(item: dict, num_classes: int) -> None:
    assert set(item) == {"image", "label", "index", "mask", "has_mask", "box"}
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (SIZE, SIZE) and item["mask"].dtype == torch.float32
    assert 0.0 <= item["mask"].min() and item["mask"].max() <= 1.0
    assert item["box"].shape == (4,) and item["box"].dtype == torch.float32
    assert isinstance(item["label"], int) and 0 <= item["label"] < num_classes
    assert isinstance(item["has_mask"], bool)


def test_all_datasets_registered():
    assert {"synthetic", "cub", "food101", "pets", "imagefolder"} <= set(DATASETS.names())


# --------------------------------------------------------------------------- CUB


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub(root: Path, segmentations: bool = False) -> Path:
    """Six images, two per class; ids 1, 3, 5 train and 2, 4, 6 test. Image 1 is 80×40 with box (30, 10, 20, 20)."""
    folder = root / "CUB_200_2011"
    lines = {name: [] for name in ("images", "train_test_split", "image_class_labels", "bounding_boxes")}
    for image_id in range(1, 7):
        label = (image_id - 1) // 2 + 1
        rel = f"{CUB_CLASSES[label - 1]}/bird_{image_id}.jpg"
        width, height = (80, 40) if image_id == 1 else (SIZE, SIZE)
        write_image(folder / "images" / rel, width, height, seed=image_id)
        lines["images"].append(f"{image_id} {rel}")
        lines["train_test_split"].append(f"{image_id} {image_id % 2}")
        lines["image_class_labels"].append(f"{image_id} {label}")
        lines["bounding_boxes"].append(f"{image_id} 30.0 10.0 20.0 20.0" if image_id == 1 else f"{image_id} 2.0 4.0 10.0 8.0")
        if segmentations:
            seg = np.zeros((height, width), dtype=np.uint8)
            seg[4:12, 8:20] = 255
            path = folder / "segmentations" / rel.replace(".jpg", ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(seg, mode="L").save(path)
    for name, content in lines.items():
        (folder / f"{name}.txt").write_text("\n".join(content) + "\n")
    (folder / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CUB_CLASSES)))
    return folder


def test_cub_splits_labels_and_classes(tmp_path, transform):
    make_cub(tmp_path)
    train = build_dataset("cub", "train", transform, root=tmp_path)
    test = build_dataset("cub", "test", transform, root=tmp_path / "CUB_200_2011")  # the folder itself also works
    assert len(train) == 3 and len(test) == 3
    assert train.classes == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert [train[i]["label"] for i in range(3)] == [0, 1, 2]
    assert [test[i]["label"] for i in range(3)] == [0, 1, 2]
    assert train.has_boxes and not train.has_masks
    for i in range(3):
        check_item(train[i], 3)


def test_cub_box_through_resize_and_crop(tmp_path, transform):
    make_cub(tmp_path)
    item = build_dataset("cub", "train", transform, root=tmp_path)[0]
    # 80×40 → shorter side 32: scale 0.8, resized 64×32, centre crop starts at x = 16.
    # box (30, 10, 50, 30) → (24, 8, 40, 24) → (8, 8, 24, 24).
    assert item["box"].tolist() == [8.0, 8.0, 24.0, 24.0]
    # without segmentations the box is a coarse mask
    assert item["has_mask"] and item["mask"].sum() == 16 * 16 and item["mask"][8:24, 8:24].min() == 1


def test_cub_segmentation_is_the_mask(tmp_path, transform):
    make_cub(tmp_path, segmentations=True)
    ds = build_dataset("cub", "train", transform, root=tmp_path)
    assert ds.has_masks
    item = ds[1]  # image 3: 32×32, no resize
    expected = torch.zeros(SIZE, SIZE)
    expected[4:12, 8:20] = 1.0
    assert item["has_mask"] and torch.equal(item["mask"], expected)
    assert item["box"].tolist() == [2.0, 4.0, 12.0, 12.0]


def test_cub_not_found_names_folder(tmp_path, transform):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path)) + r".*images\.txt.*Caltech-UCSD Birds-200-2011"):
        build_dataset("cub", "train", transform, root=tmp_path)
    with pytest.raises(DatasetError, match="--data-root"):
        build_dataset("cub", "train", transform, root=None)


def test_cub_missing_file_is_named(tmp_path, transform):
    folder = make_cub(tmp_path)
    (folder / "bounding_boxes.txt").unlink()
    with pytest.raises(DatasetError, match="missing: bounding_boxes.txt"):
        build_dataset("cub", "train", transform, root=tmp_path)


def test_cub_malformed_line_names_file_and_line(tmp_path, transform):
    folder = make_cub(tmp_path)
    lines = (folder / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 2.0 4.0 ten 8.0"
    (folder / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 3 in .*bounding_boxes\.txt"):
        build_dataset("cub", "train", transform, root=tmp_path)
    (folder / "bounding_boxes.txt").write_text("\n".join(lines[:2]) + "\n3 2.0 4.0\n")
    with pytest.raises(DatasetError, match=r"line 3 in .*bounding_boxes\.txt.*expected 5 fields"):
        build_dataset("cub", "train", transform, root=tmp_path)


def test_cub_rejects_options(tmp_path, transform):
    make_cub(tmp_path)
    with pytest.raises(DatasetError, match="takes no options"):
        build_dataset("cub", "train", transform, root=tmp_path, seed=1)


# --------------------------------------------------------------------------- Food-101


FOOD_CLASSES = ["apple_pie", "baby_back_ribs"]


def make_food(root: Path) -> Path:
    """Three train and one test image per class."""
    folder = root / "food-101"
    meta = {"train": {}, "test": {}}
    for c, name in enumerate(FOOD_CLASSES):
        for k in range(4):
            split = "train" if k < 3 else "test"
            write_image(folder / "images" / name / f"{100 + k}.jpg", seed=10 * c + k)
            meta[split].setdefault(name, []).append(f"{name}/{100 + k}")
    (folder / "meta").mkdir(parents=True)
    for split, content in meta.items():
        (folder / "meta" / f"{split}.json").write_text(json.dumps(content))
    (folder / "meta" / "classes.txt").write_text("\n".join(FOOD_CLASSES) + "\n")
    return folder


def test_food101_splits_and_labels(tmp_path, transform):
    make_food(tmp_path)
    train = build_dataset("food101", "train", transform, root=tmp_path)
    test = build_dataset("food101", "test", transform, root=tmp_path / "food-101")
    assert len(train) == 6 and len(test) == 2
    assert train.classes == FOOD_CLASSES
    assert [train[i]["label"] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert not train.has_masks and not train.has_boxes
    item = test[1]
    check_item(item, 2)
    assert item["label"] == 1 and not item["has_mask"] and item["box"].tolist() == [-1.0] * 4


def test_food101_not_found_names_folder(tmp_path, transform):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "food-101")) + r".*meta/train\.json.*nothing is downloaded"):
        build_dataset("food101", "train", transform, root=tmp_path)


def test_food101_missing_split_file(tmp_path, transform):
    folder = make_food(tmp_path)
    (folder / "meta" / "test.json").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(folder))):
        build_dataset("food101", "test", transform, root=tmp_path)


def test_food101_corrupt_image_names_file(tmp_path, transform):
    folder = make_food(tmp_path)
    bad = folder / "images" / "apple_pie" / "101.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = build_dataset("food101", "train", transform, root=tmp_path)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        ds[1]


# --------------------------------------------------------------------------- Oxford-IIIT Pets


def hand_trimap() -> np.ndarray:
    """32×32 trimap: background 2, pet 1 at rows 10..19 × cols 6..21, a border of 3 around it."""
    trimap = np.full((SIZE, SIZE), 2, dtype=np.uint8)
    trimap[9:21, 5:23] = 3
    trimap[10:20, 6:22] = 1
    return trimap


def make_pets(root: Path) -> Path:
    folder = root / "oxford-iiit-pet"
    names = {"trainval": [("Abyssinian_1", 1, 1), ("Abyssinian_2", 1, 1), ("american_bulldog_1", 2, 2)],
             "test": [("Abyssinian_3", 1, 1), ("american_bulldog_2", 2, 2)]}
    (folder / "annotations" / "trimaps").mkdir(parents=True)
    for split, rows in names.items():
        (folder / "annotations" / f"{split}.txt").write_text("".join(f"{n} {c} {b} 1\n" for n, c, b in rows))
        for k, (n, _, _) in enumerate(rows):
            write_image(folder / "images" / f"{n}.jpg", SIZE, SIZE, seed=k)
            Image.fromarray(hand_trimap(), mode="L").save(folder / "annotations" / "trimaps" / f"{n}.png")
    return folder


def test_trimap_to_mask_by_hand():
    mask, box = trimap_to_mask(Image.fromarray(hand_trimap(), mode="L"))
    expected = np.zeros((SIZE, SIZE), dtype=np.uint8)
    expected[9:21, 5:23] = 255  # pet and border, not background
    assert np.array_equal(np.asarray(mask), expected)
    assert box == (5.0, 9.0, 23.0, 21.0)
    empty, no_box = trimap_to_mask(Image.fromarray(np.full((4, 4), 2, dtype=np.uint8), mode="L"))
    assert np.asarray(empty).max() == 0 and no_box is None


def test_pets_splits_labels_and_masks(tmp_path, transform):
    make_pets(tmp_path)
    train = build_dataset("pets", "train", transform, root=tmp_path)
    test = build_dataset("pets", "test", transform, root=tmp_path)
    assert len(train) == 3 and len(test) == 2
    assert train.classes == ["Abyssinian", "American Bulldog"]
    assert [train[i]["label"] for i in range(3)] == [0, 0, 1]
    assert train.has_masks and train.has_boxes
    item = test[1]
    check_item(item, 2)
    expected = torch.zeros(SIZE, SIZE)
    expected[9:21, 5:23] = 1.0
    assert item["label"] == 1 and item["has_mask"] and torch.equal(item["mask"], expected)
    assert item["box"].tolist() == [5.0, 9.0, 23.0, 21.0]


def test_pets_not_found_names_folder(tmp_path, transform):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "oxford-iiit-pet")) + r".*annotations/trimaps.*nothing is downloaded"):
        build_dataset("pets", "train", transform, root=tmp_path)


def test_pets_missing_trimaps(tmp_path, transform):
    folder = make_pets(tmp_path)
    for f in (folder / "annotations" / "trimaps").iterdir():
        f.unlink()
    (folder / "annotations" / "trimaps").rmdir()
    with pytest.raises(DatasetError, match="no annotations/trimaps/ folder"):
        build_dataset("pets", "test", transform, root=tmp_path)


# --------------------------------------------------------------------------- image folders


def make_imagefolder(root: Path) -> None:
    for split, per_class in (("train", 2), ("test", 1)):
        for j, c in enumerate(("cat", "dog", "fox")):
            if split == "test" and c == "dog":
                continue  # a class missing from one split keeps its index
            for k in range(per_class):
                write_image(root / split / c / f"{k}.png", seed=10 * j + k)


def test_imagefolder_splits_and_labels(tmp_path, transform):
    make_imagefolder(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train = build_dataset("imagefolder", "train", transform, root=tmp_path)
    test = build_dataset("imagefolder", "test", transform, root=tmp_path)
    assert len(train) == 6 and len(test) == 2
    assert train.classes == test.classes == ["cat", "dog", "fox"]
    assert [train[i]["label"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [test[i]["label"] for i in range(2)] == [0, 2]
    check_item(test[0], 3)
    assert not test[0]["has_mask"]


def test_imagefolder_not_found_names_folder(tmp_path, transform):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "test")) + r".*<class>/<image>"):
        build_dataset("imagefolder", "test", transform, root=tmp_path)


def test_imagefolder_corrupt_image_names_file(tmp_path, transform):
    make_imagefolder(tmp_path)
    bad = tmp_path / "test" / "fox" / "0.png"
    bad.write_bytes(b"\x89PNG garbage")
    ds = build_dataset("imagefolder", "test", transform, root=tmp_path)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        ds[1]


# --------------------------------------------------------------------------- synthetic


def synthetic(split: str = "train", size: int = SIZE, **options):
    t = ImageTransform(image_size=size, mean=(0.5,) * 3, std=(0.25,) * 3)
    return build_dataset("synthetic", split, t, **{"n_train": 60, "n_test": 40, **options})


def test_synthetic_items_and_classes():
    ds = synthetic()
    assert len(ds) == 60 and len(synthetic("test")) == 40
    assert ds.classes[:3] == ["disk-solid", "disk-striped", "square-solid"] and len(ds.classes) == 10
    assert ds.has_masks and ds.has_boxes
    for i in range(3):
        item = ds[i]
        check_item(item, 10)
        assert item["has_mask"] and item["mask"].sum() > 0
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert len(synthetic(num_classes=2).classes) == 2 and len(synthetic(num_classes=12).classes) == 12


def test_synthetic_is_deterministic():
    a, b = synthetic(seed=3), synthetic(seed=3)
    for key in ("image", "mask", "box"):
        assert torch.equal(a[7][key], b[7][key])
    assert not torch.equal(a[7]["image"], synthetic(seed=4)[7]["image"])
    assert not torch.equal(a[7]["image"], synthetic("test", seed=3)[7]["image"])
    # item i does not depend on what was read before
    alone = synthetic(seed=3)[9]["image"]
    after = synthetic(seed=3)
    for i in (5, 0, 12, 8):
        after[i]
    assert torch.equal(after[9]["image"], alone)


def test_synthetic_mask_is_exactly_the_object():
    plain, tied = synthetic(size=64, spurious=0.0), synthetic(size=64, spurious=1.0)
    checked = 0
    for i in range(20):
        if plain.style_of(i) == tied.style_of(i):
            continue
        a, b = plain.load(i), tied.load(i)
        pa, pb = np.asarray(a.image).astype(int), np.asarray(b.image).astype(int)
        mask = np.asarray(a.mask) > 0
        assert np.array_equal(mask, np.asarray(b.mask) > 0)
        # same object, different background: equal exactly on the mask, different almost everywhere else
        assert np.array_equal(pa[mask], pb[mask])
        assert (np.abs(pa - pb).sum(-1)[~mask] > 0).mean() > 0.9
        colours = len(np.unique(pa[mask], axis=0))
        assert colours == (1 if a.label % 2 == 0 else 2)  # solid vs striped
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert a.box == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        checked += 1
    assert checked >= 10


def background_hue(image: Image.Image, mask: Image.Image) -> float:
    """Circular mean hue in [0, 1) of the pixels outside the mask."""
    hue = np.asarray(image.convert("HSV"))[..., 0].astype(float) / 255.0
    angles = 2 * np.pi * hue[np.asarray(mask) == 0]
    return float(np.angle(np.exp(1j * angles).mean()) / (2 * np.pi)) % 1.0


def test_synthetic_spurious_background_only_in_train():
    train, test = synthetic(spurious=1.0, n_train=100, n_test=100), synthetic("test", spurious=1.0, n_train=100, n_test=100)
    assert all(train.style_of(i) == train[i]["label"] for i in range(100))
    assert sum(test.style_of(i) == test[i]["label"] for i in range(100)) < 30  # about 1 in 10 by chance
    assert len({test.style_of(i) for i in range(100)}) == 10
    assert 0 < sum(synthetic(spurious=0.5, n_train=100).style_of(i) == i % 10 for i in range(100)) < 100
    # the style is what the image shows: background hue = style / num_classes
    for ds in (train, test):
        for i in range(10):
            raw = ds.load(i)
            distance = abs(background_hue(raw.image, raw.mask) - ds.style_of(i) / 10)
            assert min(distance, 1 - distance) < 0.04


def test_synthetic_labels_balanced():
    labels = [synthetic(n_train=100)[i]["label"] for i in range(100)]
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10


def test_synthetic_same_batches_with_workers():
    ds = synthetic(n_train=24)
    batches = [list(DataLoader(ds, batch_size=8, num_workers=w)) for w in (0, 2)]
    for b0, b2 in zip(*batches):
        assert torch.equal(b0["image"], b2["image"]) and torch.equal(b0["mask"], b2["mask"])
        assert torch.equal(b0["label"], b2["label"]) and torch.equal(b0["box"], b2["box"])


def test_synthetic_ignores_crop_pct():
    cropped = ImageTransform(image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=0.875)
    ds = build_dataset("synthetic", "test", cropped, n_test=5)
    assert ds.transform.crop_pct == 1.0
    assert torch.equal(ds[2]["image"], synthetic("test")[2]["image"])


def test_synthetic_rejects_bad_options():
    with pytest.raises(DatasetError, match="valid options: seed, num_classes, n_train, n_test, spurious"):
        synthetic(colour="red")
    with pytest.raises(DatasetError, match="num_classes"):
        synthetic(num_classes=13)
    with pytest.raises(DatasetError, match="spurious"):
        synthetic(spurious=1.5)


def test_synthetic_needs_no_folder():
    with pytest.raises(DatasetError, match="empty"):
        synthetic("test", n_test=0)


class _FixedDraws:
    """A stand-in generator whose uniform draws return the values given, in order."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def uniform(self, low: float, high: float) -> float:
        return self.values.pop(0)


def test_synthetic_position_by_hand():
    from ersm_core.data.synthetic import _position

    # a shape spanning ±10 px in a 64 px image: centres allowed in [11, 52] on both axes (middle 31.5, room 20.5)
    extent = (-10.0, -10.0, 10.0, 10.0)
    assert _position(_FixedDraws(0.0, 1.0), 64, extent) == pytest.approx((52.0, 31.5))  # angle 0, full reach
    assert _position(_FixedDraws(np.pi / 2, 0.6), 64, extent) == pytest.approx((31.5, 31.5 + 0.6 * 20.5))
    # an asymmetric extent (a triangle's: more above the centre than below) shifts the allowed range
    assert _position(_FixedDraws(np.pi, 1.0), 64, (-8.0, -10.0, 8.0, 5.0)) == pytest.approx((9.0, (11 + 57) / 2))


@pytest.mark.parametrize("size", [32, 64])
def test_synthetic_objects_off_centre_and_inside(size):
    """Objects sit away from the image centre (a centre-favouring map does not find them) and never touch the border."""
    ds = synthetic("test", size=size, n_test=60, num_classes=12)
    offsets = []
    for i in range(60):
        raw = ds.load(i)
        mask = np.asarray(raw.mask) > 0
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        x0, y0, x1, y1 = raw.box
        offsets.append(np.hypot((x0 + x1) / 2 - size / 2, (y0 + y1) / 2 - size / 2) / size)
    # measured 0.11-0.13 (min) and 0.20-0.22 (mean) of the side; centred placement gave a minimum near 0
    assert min(offsets) > 0.08 and np.mean(offsets) > 0.17
