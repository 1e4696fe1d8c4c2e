"""Localization functions on hand-made maps with known answers, the baseline maps and localization.csv."""

import numpy as np
import pytest

from ersm_eval.localization import (
    BINARY_METRICS,
    box_correct,
    box_from_map,
    box_iou,
    iou_metric,
    largest_component,
    localization_metrics,
    localization_table,
    map_scores,
    mask_iou,
    mass_inside,
    per_image_metrics,
    pointing_hits,
    threshold_map,
)
from ersm_eval.maps import baseline_saliency, baseline_tokens, token_center_distance
from ersm_eval.schema import TABLES
from ersm_eval.stats import paired_bootstrap_test, wilson_interval


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


# -- baseline maps -----------------------------------------------------------------------------
def test_center_map_by_hand():
    # 4x4 grid: token centres are 0.5 or 1.5 tokens from the centre in each direction; sigma = 1
    d = token_center_distance(4, 4)
    assert d[0, 0] == pytest.approx(np.sqrt(4.5)) and d[1, 1] == pytest.approx(np.sqrt(0.5))
    assert d[0, 1] == pytest.approx(np.sqrt(2.5))
    center = baseline_tokens("center", 4, 4)
    assert center[0, 0] == pytest.approx(np.exp(-2.25))
    assert center[1, 2] == pytest.approx(np.exp(-0.25))
    assert center[3, 1] == pytest.approx(np.exp(-1.25))
    # 2x3 grid: sigma = min(2, 3)/4 = 0.5, so exp(-d^2 / 0.5)
    center = baseline_tokens("center", 2, 3)
    np.testing.assert_allclose(center, np.exp(-np.array([[1.25, 0.25, 1.25], [1.25, 0.25, 1.25]]) / 0.5))
    np.testing.assert_array_equal(baseline_tokens("uniform", 2, 3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="uniform, center"):
        baseline_tokens("nosuch", 2, 2)


def _object_8x8():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 1:5] = True  # 12 pixels, box (1, 2, 5, 5)
    return mask, (1.0, 2.0, 5.0, 5.0)


def test_uniform_map_scores_by_hand():
    """A flat map: thresholds give the whole image, the largest segment is the whole image, every pixel ties."""
    mask, box = _object_8x8()
    flat = baseline_saliency("uniform", (2, 2), 8)
    np.testing.assert_array_equal(flat, np.ones((8, 8)))
    scores = map_scores(flat[None], mask[None], [box], iou_thresholds=(0.25, 0.5, 0.75), box_threshold=0.15)
    area = mask.mean()  # 12 / 64
    assert scores["mass"][0] == area  # exactly: the mass is spread evenly
    np.testing.assert_array_equal(scores["iou"][0], [area, area, area])  # thresholded map = whole image
    assert scores["box_iou"][0] == pytest.approx(12 / 64)  # predicted box = image, truth box 4x3
    assert scores["pointing"][0] == area  # 64 tied maxima, 12 on the object
    metrics = per_image_metrics(scores["mass"], scores["iou"], scores["box_iou"], scores["pointing"], [True])
    assert list(metrics) == localization_metrics((0.25, 0.5, 0.75))
    assert metrics["box_gt_known"][0] == 0 and metrics["box_accuracy"][0] == 0  # 12/64 < 0.5
    # a box over more than half the image is "found" by the flat map, if the class is right
    big = np.zeros((8, 8), bool)
    big[:, :6] = True
    scores = map_scores(flat[None], big[None], [(0, 0, 6, 8)])
    assert scores["box_iou"][0] == pytest.approx(48 / 64)
    metrics = per_image_metrics(scores["mass"], scores["iou"], scores["box_iou"], scores["pointing"], [True])
    assert metrics["box_accuracy"][0] == 1 and metrics["box_gt_known"][0] == 1
    metrics = per_image_metrics(scores["mass"], scores["iou"], scores["box_iou"], scores["pointing"], [False])
    assert metrics["box_accuracy"][0] == 0 and metrics["box_gt_known"][0] == 1


def test_center_map_scores_by_hand():
    # 3x3 grid at 3x3 pixels (no resampling): sigma = 0.75, so the centre is 1, edges e1, corners e2
    e1, e2 = np.exp(-1 / 1.125), np.exp(-2 / 1.125)  # 0.411, 0.169
    center = baseline_saliency("center", (3, 3), 3)
    np.testing.assert_allclose(center, [[e2, e1, e2], [e1, 1, e1], [e2, e1, e2]], rtol=1e-6)
    mask = np.zeros((3, 3), bool)
    mask[1, 1:] = True  # the centre and its right neighbour; box (1, 1, 3, 2)
    scores = map_scores(center[None], mask[None], [(1, 1, 3, 2)], iou_thresholds=(0.25, 0.5), box_threshold=0.15)
    assert scores["mass"][0] == pytest.approx((1 + e1) / (1 + 4 * e1 + 4 * e2), rel=1e-6)
    # at 0.5 of the max only the centre pixel: IoU 1/2; at 0.25 the plus shape (5 pixels): IoU 2/5
    np.testing.assert_allclose(scores["iou"][0], [2 / 5, 1 / 2])
    # every pixel is >= 0.15 of the max (e2 = 0.169): the box is the image, IoU 2/9
    assert scores["box_iou"][0] == pytest.approx(2 / 9)
    assert scores["pointing"][0] == 1.0  # the single peak is on the object


def test_pointing_counts_ties_and_empty_maps():
    mask = np.zeros((2, 3), bool)
    mask[0, 0] = True
    saliency = np.array([[[2.0, 0.0, 2.0], [1.0, 0.0, 0.0]],  # two maxima, one on the object
                         [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # points nowhere
                         [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # a single peak on the object
    np.testing.assert_array_equal(pointing_hits(saliency, np.stack([mask] * 3)), [0.5, 0.0, 1.0])


# -- the table of every map against the better baseline ------------------------------------------
def _per_map():
    return {
        "keep": {"mass_in_object": np.array([0.9, 0.8, 0.7, 0.6]), "box_accuracy": np.array([1.0, 1, 1, 0])},
        "cam": {"mass_in_object": np.array([0.5, 0.2, 0.6, np.nan]), "box_accuracy": np.array([1.0, 0, 0, 0])},
        "uniform": {"mass_in_object": np.array([0.2, 0.2, 0.4, 0.4]), "box_accuracy": np.array([1.0, 0, 0, 0])},
        "center": {"mass_in_object": np.array([0.5, 0.3, 0.5, 0.3]), "box_accuracy": np.array([0.0, 0, 0, 0])},
    }


def test_localization_table_by_hand():
    table = localization_table(_per_map(), "m", seed=3, n_boot=500)
    assert list(table.columns[: len(TABLES["localization.csv"])]) == TABLES["localization.csv"]
    assert list(zip(table["map"], table["metric"])) == [
        (m, k) for k in ("mass_in_object", "box_accuracy") for m in ("keep", "cam", "uniform", "center")]
    row = table.set_index(["map", "metric"])
    # mass: the center map is the better baseline (mean 0.4 > 0.3)
    keep = row.loc[("keep", "mass_in_object")]
    assert keep["value"] == pytest.approx(0.75) and keep["baseline"] == "center"
    assert keep["excess"] == pytest.approx(0.35)  # per image 0.4, 0.5, 0.2, 0.3
    mean, low, high, _, _ = paired_bootstrap_test(np.array([0.4, 0.5, 0.2, 0.3]), n_boot=500, seed=3)
    assert (keep["excess_ci_low"], keep["excess_ci_high"]) == (pytest.approx(low[0]), pytest.approx(high[0]))
    assert 0.2 <= keep["excess_ci_low"] <= 0.35 <= keep["excess_ci_high"] <= 0.5
    assert keep["verdict"] == "localizes"
    # cam: undefined on image 3, so its value is over 3 images and its excess paired over those 3
    cam = row.loc[("cam", "mass_in_object")]
    assert cam["value"] == pytest.approx(1.3 / 3) and cam["n_images"] == 3
    assert cam["excess"] == pytest.approx((0.0 - 0.1 + 0.1) / 3, abs=1e-12)
    assert cam["excess_ci_low"] < 0 and cam["verdict"] == "does_not_localize"
    # box accuracy: hit-or-miss, Wilson intervals; the uniform map is the better baseline (0.25 > 0)
    acc = row.loc[("keep", "box_accuracy")]
    assert "box_accuracy" in BINARY_METRICS
    assert acc["value"] == 0.75 and acc["baseline"] == "uniform"
    w_low, w_high = wilson_interval(3, 4)
    assert (acc["ci_low"], acc["ci_high"]) == (pytest.approx(w_low), pytest.approx(w_high))
    assert acc["excess"] == pytest.approx(0.5)  # per image 0, 1, 1, 0
    # baseline rows: a value and interval, never an excess, never "localizes"
    for name in ("uniform", "center"):
        for metric in ("mass_in_object", "box_accuracy"):
            base = row.loc[(name, metric)]
            assert base["verdict"] == "baseline" and np.isnan(base["excess"]) and base["baseline"] == ""
    assert row.loc[("uniform", "mass_in_object"), "value"] == pytest.approx(0.3)
    assert set(table["verdict"]) <= {"localizes", "does_not_localize", "baseline"}


def test_a_tie_between_baselines_picks_uniform_and_excess_needs_an_interval_above_zero():
    per_map = {"keep": {"m": np.array([0.5, 0.5])}, "uniform": {"m": np.array([0.2, 0.4])},
               "center": {"m": np.array([0.4, 0.2])}}
    row = localization_table(per_map, "x", n_boot=200).set_index("map").loc["keep"]
    assert row["baseline"] == "uniform" and row["excess"] == pytest.approx(0.2)
    # the same map as the better baseline: excess exactly 0, interval [0, 0]: does not localize
    per_map["keep"]["m"] = np.array([0.2, 0.4])
    row = localization_table(per_map, "x", n_boot=200).set_index("map").loc["keep"]
    assert row["excess"] == 0 and row["excess_ci_low"] == 0 and row["verdict"] == "does_not_localize"


def test_localization_table_needs_both_baselines():
    with pytest.raises(ValueError, match="uniform, center"):
        localization_table({"keep": {"m": np.ones(2)}, "uniform": {"m": np.ones(2)}}, "x")


def test_iou_metric_names():
    assert [iou_metric(t) for t in (0.25, 0.5, 0.75)] == ["iou@0.25", "iou@0.5", "iou@0.75"]
