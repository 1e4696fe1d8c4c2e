"""Occluder patterns and fills: areas, regions, seeding."""

import numpy as np
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_eval.occluders import (
    FILLS,
    PATTERNS,
    apply_occluder,
    center_masks,
    check_severities,
    fill_values,
    grid_masks,
    occluder_rng,
    pattern_masks,
    random_squares_masks,
)

SEVERITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def _disk(size=64, cy=28, cx=34, r=14):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r


@pytest.mark.parametrize("size", [32, 64, 128])
def test_random_squares_cover_the_exact_target_and_are_nested(size):
    masks = pattern_masks("random_squares", size, SEVERITIES, seed=0, index=7)
    np.testing.assert_allclose(masks.mean(axis=(1, 2)), SEVERITIES, atol=0.5 / size**2)
    for low, high in zip(masks[:-1], masks[1:]):
        assert not (low & ~high).any()


@pytest.mark.parametrize("size,grid_size", [(64, 2), (64, 4), (128, 4), (128, 3)])
def test_grid_and_center_areas_within_tolerance(size, grid_size):
    rng = occluder_rng(0, 3, "pattern:grid")
    np.testing.assert_allclose(grid_masks(size, SEVERITIES, rng, grid_size).mean(axis=(1, 2)), SEVERITIES, atol=0.01)
    np.testing.assert_allclose(center_masks(size, SEVERITIES).mean(axis=(1, 2)), SEVERITIES, atol=0.01)


def test_grid_half_severity_hides_every_other_cell():
    size, g = 64, 4
    mask = grid_masks(size, [0.5], np.random.default_rng(0), g)[0]
    assert mask.sum() == size * size // 2
    # undo the seeded phase, then every cell is all hidden or all visible, alternating
    dy, dx = (int(v) for v in np.random.default_rng(0).integers(size // g, size=2))
    cells = np.roll(mask, (-dy, -dx), axis=(0, 1)).reshape(g, size // g, g, size // g).mean(axis=(1, 3))
    np.testing.assert_array_equal(cells, (np.add.outer(np.arange(g), np.arange(g)) % 2 == 0).astype(float))


def test_center_mask_is_centred():
    mask = center_masks(64, [0.25])[0]
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (16, 47, 16, 47)


def test_object_and_background_touch_only_their_pixels():
    obj = _disk()
    fg = pattern_masks("object", 64, SEVERITIES, 0, 5, obj.astype(np.float32))
    bg = pattern_masks("background", 64, SEVERITIES, 0, 5, obj.astype(np.float32))
    assert not (fg & ~obj).any() and not (bg & obj).any()
    # severity = fraction of the object's (background's) pixels
    np.testing.assert_allclose(fg.sum(axis=(1, 2)) / obj.sum(), SEVERITIES, atol=0.5 / obj.sum())
    np.testing.assert_allclose(bg.sum(axis=(1, 2)) / (~obj).sum(), SEVERITIES, atol=0.5 / (~obj).sum())
    whole = pattern_masks("object", 64, [1.0], 0, 5, obj)[0]
    np.testing.assert_array_equal(whole, obj)


def test_mask_patterns_need_a_mask():
    assert pattern_masks("object", 32, SEVERITIES, 0, 0, None) is None
    assert pattern_masks("object", 32, SEVERITIES, 0, 0, np.zeros((32, 32))) is None  # empty object
    assert PATTERNS.get("object").needs_mask and not PATTERNS.get("grid").needs_mask


def test_same_seed_same_occluder_other_seed_other_occluder():
    a = pattern_masks("random_squares", 64, SEVERITIES, 3, 11)
    np.testing.assert_array_equal(a, pattern_masks("random_squares", 64, SEVERITIES, 3, 11))
    assert not np.array_equal(a, pattern_masks("random_squares", 64, SEVERITIES, 4, 11))
    assert not np.array_equal(a, pattern_masks("random_squares", 64, SEVERITIES, 3, 12))


def test_a_severity_mask_does_not_depend_on_the_other_severities():
    alone = pattern_masks("random_squares", 64, [0.3], 1, 2)[0]
    np.testing.assert_array_equal(alone, pattern_masks("random_squares", 64, [0.1, 0.3, 0.6], 1, 2)[1])
    obj = _disk()
    np.testing.assert_array_equal(pattern_masks("object", 64, [0.4], 1, 2, obj)[0],
                                  pattern_masks("object", 64, SEVERITIES, 1, 2, obj)[4])


def test_random_squares_region_argument_checked():
    with pytest.raises(ValueError, match="region has shape"):
        random_squares_masks(16, [0.5], np.random.default_rng(0), region=np.ones((8, 8), bool))


def test_fills_in_normalized_space():
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    images = torch.randn(3, 3, 32, 32)
    assert torch.equal(fill_values("gray", images, mean, std, 0, [0, 1, 2]), torch.zeros_like(images))
    black = fill_values("black", images, mean, std, 0, [0, 1, 2])
    torch.testing.assert_close(black[1, :, 5, 7], torch.tensor([-2.0, -2.0, -3.0]))
    blur = fill_values("blur", images, mean, std, 0, [0, 1, 2])
    assert blur.shape == images.shape and blur.var() < 0.2 * images.var()


def test_noise_fill_is_seeded_per_image_not_per_batch():
    images = torch.zeros(3, 3, 16, 16)
    batch = fill_values("noise", images, (0,) * 3, (1,) * 3, 0, [4, 5, 6])
    single = fill_values("noise", images[:1], (0,) * 3, (1,) * 3, 0, [5])
    torch.testing.assert_close(batch[1], single[0])
    assert not torch.equal(batch[1], fill_values("noise", images[:1], (0,) * 3, (1,) * 3, 1, [5])[0])
    assert FILLS.get("noise").seeded and not FILLS.get("gray").seeded


def test_apply_occluder_changes_only_masked_pixels():
    images, fill = torch.randn(2, 3, 16, 16), torch.full((2, 3, 16, 16), 9.0)
    masks = torch.from_numpy(np.stack([pattern_masks("random_squares", 16, [0.2, 0.5], 0, i) for i in range(2)]))
    out = apply_occluder(images, masks, fill)  # [2, 2, 3, 16, 16]
    changed = (out != images[:, None]).any(2)
    assert torch.equal(changed, masks)
    assert torch.equal(apply_occluder(images, masks[:, 0], fill), out[:, 0])


def test_unknown_names_and_bad_severities():
    with pytest.raises(ConfigError, match="random_squares"):
        PATTERNS.get("stripes")
    with pytest.raises(ConfigError, match="gray"):
        FILLS.get("pink")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        check_severities([0.2, 1.5])
    assert check_severities([0.5, 0.2, 0.5]) == (0.0, 0.2, 0.5)
