"""Images that are huge, 16-bit, EXIF-rotated, truncated or not images: read right or one message naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ersm_core.data import base
from ersm_core.data.base import open_image
from ersm_core.errors import DatasetError
from tests.safety.inputs import imagefolder, one_line_error, run_cli, two_class_checkpoint, untouched


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 65535, 128]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really a 16-bit file
    img = open_image(tmp_path / "deep.png")
    assert img.mode == "L"
    # round(v * 255 / 65535): 0, 1, 128, 255, 255, 0 (clipping would give 255 for all but 0 and 128)
    np.testing.assert_array_equal(np.asarray(img), [[0, 1, 128], [255, 255, 0]])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    img = open_image(tmp_path / "phone.jpg")
    assert img.size == (20, 40)  # upright: portrait
    arr = np.asarray(img.convert("L"))
    assert arr[:15].mean() > 200 and arr[25:].mean() < 50  # the white half is now on top


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DatasetError, match=r"big\.png is 40x40 = 1600 pixels, more than the 1000"):
        open_image(tmp_path / "big.png")


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_broken_files_name_the_file(tmp_path, kind):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes({"truncated": data[: len(data) // 2], "text": b"hello, not an image\n", "empty": b""}[kind])
    with pytest.raises(DatasetError, match=r"corrupt or unreadable image file: .*bad\.png"):
        open_image(bad)


def test_huge_image_in_a_run_is_one_line(tmp_path, monkeypatch):
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    root = imagefolder(tmp_path / "data")
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 1000)
    with untouched(root, ckpt):
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "0.png is 40x40 = 1600 pixels", "--skip-bad-images")
    assert not (tmp_path / "o").exists()
