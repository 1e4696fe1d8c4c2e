"""The one box-from-mask helper (ersm_core.data.boxes) and its users."""

import numpy as np
import pytest
from PIL import Image

from ersm_core.data.boxes import bounding_box
from ersm_core.data.pets import trimap_to_mask


def test_bounding_box_has_exclusive_ends():
    mask = np.zeros((6, 6), bool)
    mask[2:5, 3] = True  # rows 2..4, column 3
    assert bounding_box(mask) == (3.0, 2.0, 4.0, 5.0)
    assert bounding_box(np.zeros((3, 3), bool)) is None
    single = np.zeros((4, 5), np.uint8)
    single[1, 4] = 255  # any non-zero value is object
    assert bounding_box(single) == (4.0, 1.0, 5.0, 2.0)
    with pytest.raises(ValueError, match="2-D mask"):
        bounding_box(np.ones((2, 2, 2)))


def test_pets_trimap_box_is_the_masks_box():
    trimap = np.full((8, 10), 2, np.uint8)  # background
    trimap[3:6, 2:4] = 1  # pet
    trimap[6, 4] = 3  # border counts as pet
    mask, box = trimap_to_mask(Image.fromarray(trimap, mode="L"))
    assert box == (2.0, 3.0, 5.0, 7.0)
    assert box == bounding_box(np.asarray(mask) > 0)
    assert trimap_to_mask(Image.fromarray(np.full((4, 4), 2, np.uint8), mode="L"))[1] is None
