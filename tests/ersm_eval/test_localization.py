"""Localization functions on hand-made maps with known answers."""

import numpy as np
import pytest

from ersm_eval.localization import (
    bounding_box,
    box_correct,
    box_from_map,
    box_iou,
    largest_component,
    mask_iou,
    mass_inside,
    threshold_map,
)


def test_mass_inside_hand_case():
    saliency = np.zeros((4, 4))
    saliency[0, 0], saliency[0, 1], saliency[3, 3] = 2.0, 1.0, 1.0
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    assert mass_inside(saliency, mask) == pytest.approx(0.75)
    assert np.isnan(mass_inside(np.zeros((4, 4)), mask))
    batch = mass_inside(np.stack([saliency, np.ones((4, 4))]), np.stack([mask, mask]))
    np.testing.assert_allclose(batch, [0.75, 2 / 16])


def test_mask_iou_hand_case():
    a, b = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    a[1:3, 1:3] = True  # 4 pixels
    b[1:3, 1:4] = True  # 6 pixels, contains a
    assert mask_iou(a, b) == pytest.approx(4 / 6)
    assert np.isnan(mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)))


def test_threshold_is_relative_to_the_max():
    saliency = np.array([[0.0, 0.1], [0.5, 1.0]])
    np.testing.assert_array_equal(threshold_map(saliency, 0.5), [[False, False], [True, True]])
    np.testing.assert_array_equal(threshold_map(saliency * 4, 0.15), [[False, False], [True, True]])
    assert not threshold_map(np.zeros((2, 2)), 0.15).any()


def test_largest_component_is_eight_connected():
    grid = np.zeros((6, 6), bool)
    grid[0, 0] = grid[1, 1] = grid[2, 2] = True  # a diagonal chain: one component of 3
    grid[4:6, 4:6] = True  # a 2x2 block: 4
    np.testing.assert_array_equal(largest_component(grid), np.pad(np.ones((2, 2), bool), ((4, 0), (4, 0))))
    grid[3, 3] = True  # joins them diagonally: one component of 8
    assert largest_component(grid).sum() == 8
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_bounding_box_has_exclusive_ends():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3] = True
    assert bounding_box(mask) == (3.0, 2.0, 4.0, 5.0)
    assert bounding_box(np.zeros((3, 3), bool)) is None


def test_box_iou_hand_cases():
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou(None, (0, 0, 1, 1)) == 0.0


def test_box_protocol_takes_the_largest_segment_above_15_percent():
    saliency = np.full((20, 20), 0.1)  # below 15% of the max: ignored
    saliency[2:10, 3:12] = 1.0  # the large segment
    saliency[15:17, 15:17] = 2.0  # a small but brighter one
    assert box_from_map(saliency) == (3.0, 2.0, 12.0, 10.0)
    truth = (3, 2, 12, 10)
    assert box_iou(box_from_map(saliency), truth) == 1.0
    # a shifted truth box with IoU exactly 0.5 does not count; the class must be right too
    np.testing.assert_array_equal(box_correct([0.5, 0.51, 0.9], [True, True, False]), [False, True, False])
