"""Dataset folders and metadata that would silently mislabel or loop: one message naming file and line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ersm_core.data import ImageTransform, build_dataset
from ersm_core.errors import DatasetError
from tests.safety.inputs import imagefolder, one_line_error, run_cli, two_class_checkpoint, untouched

TRANSFORM = ImageTransform(image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


def _cub(root: Path) -> Path:
    """Four images, classes 1 and 2, ids 1-2 train and 3-4 test."""
    folder = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    rows = {"images": [], "train_test_split": [], "image_class_labels": [], "bounding_boxes": []}
    for i in range(1, 5):
        rel = f"00{(i - 1) % 2 + 1}.Bird/b{i}.jpg"
        (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "images" / rel)
        rows["images"].append(f"{i} {rel}")
        rows["train_test_split"].append(f"{i} {int(i <= 2)}")
        rows["image_class_labels"].append(f"{i} {(i - 1) % 2 + 1}")
        rows["bounding_boxes"].append(f"{i} 2.0 4.0 10.0 8.0")
    for name, lines in rows.items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (folder / "classes.txt").write_text("1 001.Bird\n2 002.Bird\n")
    return folder


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line,message", [
    ("3 nan 4.0 10.0 8.0", r"malformed line 3 in .*bounding_boxes\.txt: the box .* is not finite"),
    ("3 2.0 4.0 inf 8.0", r"malformed line 3 in .*bounding_boxes\.txt: the box .* is not finite"),
    ("3 12.0 4.0 -10.0 8.0", r"malformed line 3 in .*bounding_boxes\.txt: the box has width -10.0"),
    ("3 2.0 4.0 10.0 0.0", r"malformed line 3 in .*bounding_boxes\.txt: the box has width 10.0 and height 0.0"),
])
def test_cub_boxes_must_be_finite_and_upright(tmp_path, line, message):
    folder = _cub(tmp_path)
    _edit_line(folder / "bounding_boxes.txt", 3, line)
    with pytest.raises(DatasetError, match=message):
        build_dataset("cub", "test", TRANSFORM, root=tmp_path)


def test_cub_metadata_that_is_not_utf8(tmp_path):
    folder = _cub(tmp_path)
    (folder / "classes.txt").write_bytes(b"1 001.Bird\n2 002.V\xf6gel\n")  # latin-1
    with pytest.raises(DatasetError, match=r"classes\.txt is not UTF-8 text \(line 2, byte \d+"):
        build_dataset("cub", "test", TRANSFORM, root=tmp_path)


def test_cub_class_ids_with_a_gap(tmp_path):
    folder = _cub(tmp_path)
    (folder / "classes.txt").write_text("1 001.Bird\n3 002.Bird\n")
    with pytest.raises(DatasetError, match=r"without gaps, but id 2 is missing \(line 2 has id 3\)"):
        build_dataset("cub", "test", TRANSFORM, root=tmp_path)


def test_cub_image_path_leaving_the_folder(tmp_path):
    folder = _cub(tmp_path)
    _edit_line(folder / "images.txt", 4, "4 ../../secret.jpg")
    with pytest.raises(DatasetError, match=r"malformed line 4 in .*images\.txt: image path '\.\./\.\./secret\.jpg' leaves"):
        build_dataset("cub", "test", TRANSFORM, root=tmp_path)


def test_cub_bad_box_in_a_run_is_one_line(tmp_path):
    folder = _cub(tmp_path / "birds")
    _edit_line(folder / "bounding_boxes.txt", 4, "4 nan 4.0 10.0 8.0")
    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("Bird", "Bird"))
    with untouched(folder, ckpt):
        r = run_cli("deletion", ckpt, "--dataset", "cub", "--data-root", folder, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "malformed line 4 in", "bounding_boxes.txt")


def test_imagefolder_symlink_loop(tmp_path):
    root = imagefolder(tmp_path / "data")
    os.symlink(root / "test" / "cat", root / "test" / "cat" / "again")  # cat/again -> cat
    with pytest.raises(DatasetError, match=r"symbolic link loop in the image folder: .*again leads back to .*cat"):
        build_dataset("imagefolder", "test", TRANSFORM, root=root)


def test_imagefolder_same_file_twice(tmp_path):
    root = imagefolder(tmp_path / "data")
    os.symlink(root / "test" / "cat" / "0.png", root / "test" / "dog" / "9.png")  # one image, two labels
    with pytest.raises(DatasetError, match=r"duplicate image: .*dog/9\.png is the same file as .*cat/0\.png"):
        build_dataset("imagefolder", "test", TRANSFORM, root=root)


def test_imagefolder_identical_bytes_under_two_labels(tmp_path):
    root = imagefolder(tmp_path / "data")
    shutil.copyfile(root / "test" / "cat" / "0.png", root / "test" / "dog" / "9.png")  # a copy, not a link
    with pytest.raises(DatasetError, match=r"duplicate image: .*dog/9\.png has the same bytes as .*cat/0\.png, "
                                           r"so it would be counted under two labels \('cat' and 'dog'\)"):
        build_dataset("imagefolder", "test", TRANSFORM, root=root)


def test_imagefolder_identical_bytes_in_one_class(tmp_path):
    root = imagefolder(tmp_path / "data")
    shutil.copyfile(root / "test" / "cat" / "1.png", root / "test" / "cat" / "7.png")
    with pytest.raises(DatasetError, match=r"7\.png has the same bytes as .*cat/1\.png.*twice in one class"):
        build_dataset("imagefolder", "test", TRANSFORM, root=root)


def test_imagefolder_same_size_different_bytes_is_accepted(tmp_path):
    root = imagefolder(tmp_path / "data")
    data = bytearray((root / "test" / "cat" / "0.png").read_bytes())
    copy = root / "test" / "dog" / "9.png"
    copy.write_bytes(bytes(data))
    data[-20] ^= 0xFF  # same size, other bytes (a damaged PNG is still a distinct file here)
    copy.write_bytes(bytes(data))
    ds = build_dataset("imagefolder", "test", TRANSFORM, root=root)
    assert any(p.name == "9.png" for p, _ in ds.samples)


def test_imagefolder_loop_in_a_run_is_one_line_and_nothing_changes(tmp_path):
    root = imagefolder(tmp_path / "data")
    os.symlink(root / "test", root / "test" / "dog" / "up")
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    with untouched(root, ckpt):
        r = run_cli("sparsity", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "symbolic link loop")
    assert not (tmp_path / "o").exists()


def _unreadable(monkeypatch, path: Path) -> None:
    """chmod 000 ``path``; as root (who reads it anyway) also make every open() of it fail as it would."""
    import builtins

    path.chmod(0)
    if os.geteuid() != 0:
        return
    real_open, target = builtins.open, os.path.realpath(path)

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) == target:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)


def _same_size_unreadable(root: Path) -> Path:
    data = bytearray((root / "test" / "cat" / "0.png").read_bytes())
    data[-20] ^= 0xFF  # same size as cat/0.png, other bytes: the duplicate check hashes both
    bad = root / "test" / "dog" / "9.png"
    bad.write_bytes(bytes(data))
    return bad


def test_imagefolder_unreadable_same_size_file_is_named_not_a_traceback(tmp_path, monkeypatch):
    root = imagefolder(tmp_path / "data")
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    bad = _same_size_unreadable(root)
    try:
        _unreadable(monkeypatch, bad)
        ds = build_dataset("imagefolder", "test", TRANSFORM, root=root)  # left to the read, which names it
        assert any(p.name == "9.png" for p, _ in ds.samples)
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "9.png", "Permission denied", "--skip-bad-images")
        assert not (tmp_path / "o").exists()
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet", "--skip-bad-images", "--steps", "2", "--seeds", "0")
        assert r.exit_code == 0, r.output
    finally:
        bad.chmod(0o644)
    summary = (tmp_path / "o" / "summary.json").read_text()
    assert "9.png" in summary and "Permission denied" in summary


@pytest.mark.parametrize("line, pattern", [
    ("american_bulldog_1 99 2 1", r"class ids must run from 1 without gaps"),
    ("../../../x_1 2 2 1", r"trainval\.txt line 3: image id '\.\./\.\./\.\./x_1' is not of the form"),
    ("Abyssinian_3 2 1 1", r"line 3: breed 'Abyssinian' has class id 2, but 1 on an earlier line"),
    ("american_bulldog_1 two 2 1", r"line 3: class id 'two' must be a whole number"),
    ("american_bulldog_1 2 2", r"line 3: expected 4 fields"),
])
def test_pets_split_file_lines_are_checked(tmp_path, line, pattern):
    from tests.ersm_core.test_datasets import make_pets

    folder = make_pets(tmp_path)
    split = folder / "annotations" / "trainval.txt"
    lines = split.read_text().splitlines()
    split.write_text("\n".join(lines[:2] + [line]) + "\n")
    with pytest.raises(DatasetError, match=pattern):
        build_dataset("pets", "train", TRANSFORM, root=tmp_path)


def test_pets_real_layout_still_reads(tmp_path):
    from tests.ersm_core.test_datasets import make_pets

    make_pets(tmp_path)
    assert len(build_dataset("pets", "train", TRANSFORM, root=tmp_path)) == 3


@pytest.mark.parametrize("content", ['{"apple": ["apple/0"], "pie": 5}', "[1, 2]"])
def test_food101_meta_json_of_the_wrong_shape_is_one_message(tmp_path, content):
    from tests.ersm_core.test_datasets import make_food

    folder = make_food(tmp_path)
    (folder / "meta" / "train.json").write_text(content)
    with pytest.raises(DatasetError, match=r"Food-101 not found or unreadable"):
        build_dataset("food101", "train", TRANSFORM, root=tmp_path)
