"""Images that are huge, 16-bit, EXIF-rotated, truncated or not images: read right or one message naming the file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from ersm_core.data import base
from ersm_core.data.base import ImageTransform, open_image
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


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path, width: int, height: int, rows: int, channels: int = 3) -> None:
    """A PNG whose IHDR says width x height (8-bit RGB or grey) but whose IDAT stream holds ``rows``
    rows (filter byte 0, grey 200), then a valid IEND: built by hand, with CRCs."""
    colour = {1: 0, 3: 2}[channels]
    inflater = zlib.compressobj(9)
    row = b"\x00" + bytes([200]) * (width * channels)
    body = b"".join(inflater.compress(row * min(4096, rows - start)) for start in range(0, rows, 4096))
    body += inflater.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


def test_hand_built_png_is_read(tmp_path):
    _png(tmp_path / "ok.png", 40, 40, 40)
    assert np.asarray(open_image(tmp_path / "ok.png")).min() == 200


def test_png_check_runs_again_when_the_file_changes(tmp_path):
    """The stream check is remembered per file version: a PNG replaced by a short one is refused."""
    path = tmp_path / "img.png"
    _png(path, 40, 40, 40)
    open_image(path)  # complete: remembered as such
    _png(path, 40, 40, 1)
    with pytest.raises(DatasetError, match=r"holds 1 of 40 rows"):
        open_image(path)


@pytest.mark.parametrize("side", [40, 9000])
def test_png_with_short_pixel_data_is_refused(tmp_path, side):
    # PIL decodes this silently, rows 1..side-1 black: the IDAT stream holds 1 row of `side`
    _png(tmp_path / "short.png", side, side, 1)
    with pytest.raises(DatasetError, match=rf"corrupt or unreadable image file: .*short\.png .*holds 1 of {side} rows"):
        open_image(tmp_path / "short.png")


def test_short_png_in_a_run_is_one_line_or_skipped(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    root = imagefolder(tmp_path / "data")
    _png(root / "test" / "dog" / "9.png", 40, 40, 1)
    with untouched(root, ckpt):
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "9.png", "holds 1 of 40 rows", "--skip-bad-images")
        assert not (tmp_path / "o").exists()
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet", "--skip-bad-images", "--steps", "2", "--seeds", "0")
        assert r.exit_code == 0, r.output
    assert "9.png" in (tmp_path / "o" / "summary.json").read_text()


def test_truncated_images_stay_refused_when_a_library_allows_them(tmp_path, monkeypatch):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DatasetError, match=r"corrupt or unreadable image file: .*cut\.jpg"):
        open_image(tmp_path / "cut.jpg")


def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path):
    # 1 x 20 000 000 px (under the pixel limit, 38 KB): resizing its 1 px side to the model's input was a MemoryError
    _png(tmp_path / "strip.png", 1, 20_000_000, 20_000_000, channels=1)
    assert (tmp_path / "strip.png").stat().st_size < 100_000
    with pytest.raises(DatasetError, match=r"strip\.png is 1x20000000 pixels: a side longer than the 65535"):
        open_image(tmp_path / "strip.png")
    _png(tmp_path / "band.png", 60_000, 2, 2, channels=1)  # each side within the limit, 30 000 : 1
    with pytest.raises(DatasetError, match=r"band\.png is 60000x2 pixels, more elongated than the 100:1"):
        open_image(tmp_path / "band.png")
    _png(tmp_path / "panorama.png", 1000, 10, 10, channels=1)  # 100 : 1 is still read
    assert open_image(tmp_path / "panorama.png").size == (1000, 10)


def test_side_beyond_the_limit_is_refused(tmp_path):
    _png(tmp_path / "wide.png", 70_000, 200, 200, channels=1)
    with pytest.raises(DatasetError, match=r"wide\.png is 70000x200 pixels: a side longer than the 65535"):
        open_image(tmp_path / "wide.png")


def test_resize_never_allocates_beyond_the_pixel_limit(tmp_path):
    Image.fromarray(np.zeros((100, 200, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    image = open_image(tmp_path / "wide.png")
    # shorter side to 8192: 16384 x 8192 = 134 million pixels, refused before the resize allocates them
    with pytest.raises(DatasetError, match=r"image .*wide\.png is 200x100 pixels: resizing .* 16384x8192"):
        ImageTransform(image_size=8192, mean=(0.5,) * 3, std=(0.25,) * 3).pixels(image)


def test_extreme_aspect_ratio_in_a_run_is_one_line(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "two.pt")
    root = imagefolder(tmp_path / "data")
    _png(root / "test" / "dog" / "9.png", 1, 20_000_000, 20_000_000, channels=1)
    with untouched(root, ckpt):
        r = run_cli("occlusion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "9.png is 1x20000000 pixels", "--skip-bad-images")
    assert not (tmp_path / "o").exists()
