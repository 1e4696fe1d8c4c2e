"""Sparsity statistics: coherence on hand-made masks, the evaluator, galleries."""

import math

import numpy as np
import pytest
import torch

from ersm_core.data import build_dataset, model_transform
from ersm_core.model import ModelConfig, build_model
from ersm_eval.context import iterate_batches
from ersm_eval.verdicts import uninformative_boxes_sentence
from ersm_eval.maps import model_maps, saliency
from ersm_eval.schema import TABLES
from ersm_eval.sparsity import (
    SparsitySettings,
    NO_MASKS_NOTE,
    NOT_ASKED_NOTE,
    SparsityEvaluator,
    failure_categories,
    gallery_arrays,
    hard_mask_components,
    keep_entropy,
    neighbour_agreement,
    select_gallery,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(variant: str, size: int = 64):
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=4, variant=variant, image_size=size)).eval()


@pytest.fixture(scope="module")
def ersm():
    return _model("ersm_full")


@pytest.fixture(scope="module")
def data(ersm):
    return build_dataset("synthetic", "test", model_transform(ersm), num_classes=4, n_test=8)


def _result(evaluator, records, label, class_names, **settings):
    """The evaluator's result under another label, class names and bootstrap, from the same records."""
    again = SparsityEvaluator(evaluator.model, SparsitySettings(localize=evaluator.localize, label=label, **settings),
                              class_names)
    return again.result(records)


def _run(model, data, batch_size, localize=True, drop_masks=False):
    evaluator = SparsityEvaluator(model, SparsitySettings(localize=localize))
    for batch in iterate_batches(data, list(range(len(data))), batch_size=batch_size):
        if drop_masks:
            batch = {**batch, "has_mask": torch.zeros_like(batch["has_mask"]), "mask": torch.zeros_like(batch["mask"])}
        evaluator.update(batch)
    return evaluator, evaluator.records()


# -- coherence on hand-made masks ------------------------------------------------------------
def test_components_and_largest_share():
    hard = np.array([
        [1, 1, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ], bool)
    assert hard_mask_components(hard) == (2, pytest.approx(3 / 5))
    hard[2, 2] = True  # touches (1, 3) only diagonally... and (2, 3) directly: still 2 components
    assert hard_mask_components(hard)[0] == 2
    hard[1, 1] = True  # diagonal bridge (0,0)-(1,1)-(2,2): one component
    assert hard_mask_components(hard) == (1, 1.0)
    n, share = hard_mask_components(np.zeros((3, 3), bool))
    assert n == 0 and math.isnan(share)


def test_neighbour_agreement_hand_cases():
    assert neighbour_agreement(np.ones((3, 3), bool)) == 1.0
    # 2x2 checkerboard: 2 horizontal + 2 vertical pairs differ, both diagonal pairs agree
    assert neighbour_agreement(np.array([[1, 0], [0, 1]], bool)) == pytest.approx(2 / 6)
    # a 3x3 grid has 6 + 6 + 4 + 4 = 20 pairs; one kept corner disagrees with its 3 neighbours
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True
    assert neighbour_agreement(corner) == pytest.approx(17 / 20)


def test_keep_entropy_bounds():
    np.testing.assert_allclose(keep_entropy(np.full((2, 16), 0.3)), [1.0, 1.0])
    assert keep_entropy(np.eye(16)[3]) == pytest.approx(0.0)
    assert keep_entropy(np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(math.log(2) / math.log(4))


def test_failure_rule():
    correct = np.array([True, False, False, False, False])
    confidence = np.array([0.99, 0.95, 0.5, 0.5, 0.5])
    mass = np.array([0.9, 0.9, 0.7, 0.2, np.nan])
    keep = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    np.testing.assert_array_equal(
        failure_categories(correct, confidence, mass, keep),
        ["", "high_confidence", "focused", "distracted", "distracted"],  # last: no mask, keep above the median
    )
    np.testing.assert_array_equal(failure_categories(correct, confidence, None, None), ["", "high_confidence", "", "", ""])


# -- maps ----------------------------------------------------------------------------------------
def test_cam_sums_to_the_logit_for_a_linear_head(ersm):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model_maps(ersm, x)
    pred = out["logits"].argmax(1)
    total = out["cam"].flatten(1).sum(1) + ersm.head.bias[pred]
    torch.testing.assert_close(total, out["logits"].gather(1, pred[:, None])[:, 0], rtol=1e-4, atol=1e-5)
    assert out["keep"].shape == out["energy"].shape == out["cam"].shape == (3, *ersm.grid)


def test_energy_saliency_is_high_where_energy_is_low():
    energy = torch.tensor([[[1.0, 3.0], [2.0, 0.5]]])
    torch.testing.assert_close(saliency("energy", energy), torch.tensor([[[2.0, 0.0], [1.0, 2.5]]]))
    torch.testing.assert_close(saliency("cam", torch.tensor([[[-1.0, 2.0]]])), torch.tensor([[[0.0, 2.0]]]))


# -- the evaluator -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_every_table_is_bitwise_the_same_for_every_batch_size(size):
    model = _model("ersm_full", size)
    seven = build_dataset("synthetic", "test", model_transform(model), num_classes=4, n_test=7)
    csvs = {}
    for batch_size in (1, 3, 8):
        evaluator, records = _run(model, seven, batch_size)
        result = _result(evaluator, records, "ersm", seven.classes, n_boot=200)
        csvs[batch_size] = {name: table.to_csv(index=False) for name, table in result.tables.items()}  # full precision
    assert "localization.csv" in csvs[1] and "sparsity_summary.csv" in csvs[1]
    for batch_size in (3, 8):
        assert csvs[batch_size].keys() == csvs[1].keys()
        for name in csvs[1]:
            assert csvs[batch_size][name] == csvs[1][name], (batch_size, name)


def test_tables_follow_the_schema(ersm, data):
    evaluator, records = _run(ersm, data, 4)
    result = _result(evaluator, records, "ersm", data.classes)
    for name, table in result.tables.items():
        assert list(table.columns[: len(TABLES[name])]) == TABLES[name], name
    summary = result.tables["sparsity_summary.csv"]
    assert set(summary["map"]) == {"", "keep", "energy", "cam"}
    assert {"mean_keep", "frac_below_half", "n_components", "neighbour_agreement", "keep_entropy", "box_accuracy",
            "mass_in_object", "iou", "iou_absolute"} <= set(summary["metric"])
    assert sorted(summary.loc[(summary["map"] == "cam") & (summary["metric"] == "iou"), "threshold"]) == [0.25, 0.5, 0.75]
    per_image = result.tables["per_image.csv"]
    assert list(per_image["index"]) == list(range(8))
    assert per_image["object_keep_mass"].between(0, 1).all() and per_image["iou"].between(0, 1).all()
    assert set(per_image["failure"]) <= {"", "focused", "distracted", "high_confidence"}
    assert (per_image.loc[per_image["correct"], "failure"] == "").all()
    assert result.tables["keep_histogram.csv"]["count"].sum() == 8
    assert result.tables["per_class_keep.csv"]["n"].sum() == 8


def test_localization_table_has_the_baselines_and_the_summary_copies_it(ersm, data):
    evaluator, records = _run(ersm, data, 4)
    result = _result(evaluator, records, "ersm", data.classes)
    loc = result.tables["localization.csv"]
    assert list(loc.columns[: len(TABLES["localization.csv"])]) == TABLES["localization.csv"]
    metrics = ["mass_in_object", "iou@0.25", "iou@0.5", "iou@0.75", "box_iou", "box_gt_known", "box_accuracy",
               "pointing_game"]
    assert sorted(set(loc["metric"])) == sorted(metrics)
    for metric in metrics:
        assert list(loc.loc[loc["metric"] == metric, "map"]) == ["keep", "energy", "cam", "uniform", "center"]
    # a baseline row is never a map that localizes; real rows carry the rule's word for their interval
    baseline_rows = loc["map"].isin(["uniform", "center"])
    assert (loc.loc[baseline_rows, "verdict"] == "baseline").all() and loc.loc[baseline_rows, "excess"].isna().all()
    real = loc[~baseline_rows]
    np.testing.assert_array_equal(real["verdict"] == "localizes", real["excess_ci_low"] > 0)
    # the uniform map's mass on the object is the object's area fraction, per image and on average, exactly
    np.testing.assert_array_equal(records["uniform_mass"], records["object_area"])
    summary = result.tables["sparsity_summary.csv"]
    area = summary.loc[summary["metric"] == "object_area_fraction", "value"].item()
    uniform = loc.set_index(["map", "metric"])
    assert uniform.loc[("uniform", "mass_in_object"), "value"] == area
    assert uniform.loc[("uniform", "iou@0.5"), "value"] == area  # a flat map thresholds to the whole image
    # the summary's localization rows are the same numbers as localization.csv's
    for (name, metric, threshold), loc_metric in {("keep", "mass_in_object", None): "mass_in_object",
                                                  ("cam", "iou", 0.5): "iou@0.5",
                                                  ("energy", "box_accuracy", 0.15): "box_accuracy",
                                                  ("cam", "pointing_game", None): "pointing_game"}.items():
        sel = (summary["map"] == name) & (summary["metric"] == metric)
        if threshold is not None:
            sel &= np.isclose(summary["threshold"], threshold)
        got = summary.loc[sel, ["value", "ci_low", "ci_high"]].iloc[0].tolist()
        assert got == uniform.loc[(name, loc_metric), ["value", "ci_low", "ci_high"]].tolist(), (name, metric)
    assert result.info["localization"]["measured"] and not result.info["localization"]["uninformative"]


def _fake_batch(fractions, size=32):
    """Images whose objects cover the top rows of the image: fractions[i] * size rows."""
    masks = torch.zeros(len(fractions), size, size)
    for i, f in enumerate(fractions):
        masks[i, : round(f * size)] = 1.0
    return {"image": torch.rand(len(fractions), 3, size, size, generator=torch.Generator().manual_seed(0)),
            "label": torch.zeros(len(fractions), dtype=torch.long), "index": torch.arange(len(fractions)),
            "mask": masks, "has_mask": torch.ones(len(fractions), dtype=torch.bool),
            "box": torch.full((len(fractions), 4), -1.0)}


def test_objects_filling_the_image_make_localization_uninformative():
    model = _model("ersm_full", 32)
    # 26/32 = 81% of the image is large, 25/32 = 78% is not; exactly half large: still informative
    for fractions, expected in (([26 / 32, 26 / 32, 25 / 32, 0.25], False), ([26 / 32, 1.0, 26 / 32, 0.25], True)):
        evaluator = SparsityEvaluator(model)
        evaluator.update(_fake_batch(fractions))
        result = _result(evaluator, evaluator.records(), "m", ["a", "b", "c", "d"], n_boot=50)
        info = result.info["localization"]
        assert info["uninformative"] is expected
        share = 0.5 if not expected else 0.75
        assert info["large_object_share"] == share
        sentence = uninformative_boxes_sentence(share)
        assert (sentence in result.notes) is expected and (info["note"] == sentence) is expected
        assert "localization.csv" in result.tables  # still measured, and said to be uninformative


def test_baseline_gets_cam_only_and_says_so(data):
    model = _model("baseline")
    evaluator, records = _run(model, data, 4)
    result = _result(evaluator, records, "base", data.classes)
    assert "keep_histogram.csv" not in result.tables
    assert set(result.tables["sparsity_summary.csv"]["map"]) == {"", "cam"}
    assert result.tables["per_image.csv"]["mean_keep"].isna().all()
    assert any("no keep map" in n for n in result.notes) and any("no energy" in n for n in result.notes)


def test_l0_model_has_a_keep_map_but_no_energy(data):
    evaluator = SparsityEvaluator(_model("l0"))
    assert evaluator.map_names == ["keep", "cam"]


def test_without_masks_localization_is_skipped_and_the_rest_computed(ersm, data):
    evaluator, records = _run(ersm, data, 4, drop_masks=True)
    result = _result(evaluator, records, "ersm", data.classes)
    summary = result.tables["sparsity_summary.csv"]
    assert NO_MASKS_NOTE in result.notes and NO_MASKS_NOTE.startswith("localization not measured")
    assert "localization.csv" not in result.tables
    assert result.info["localization"] == {"measured": False, "images": 0, "uninformative": False,
                                           "large_object_share": None, "note": NO_MASKS_NOTE}
    assert not summary["metric"].isin(["box_accuracy", "mass_in_object", "iou"]).any()
    assert {"mean_keep", "n_components", "accuracy"} <= set(summary["metric"])
    assert result.tables["per_image.csv"]["object_keep_mass"].isna().all()
    assert NO_MASKS_NOTE in evaluator.notes(has_masks=False)


def test_no_localization_says_it_was_not_asked(ersm, data):
    evaluator, records = _run(ersm, data, 8, localize=False)
    result = _result(evaluator, records, "ersm", data.classes, n_boot=50)
    assert NOT_ASKED_NOTE in result.notes and NO_MASKS_NOTE not in result.notes
    assert not result.info["localization"]["measured"] and "localization.csv" not in result.tables


def test_gallery_selection_and_arrays(ersm, data):
    evaluator, records = _run(ersm, data, 8)
    per_image = _result(evaluator, records, "ersm", data.classes).tables["per_image.csv"]
    chosen = select_gallery(per_image, extra=[7, 99], first=2, per_category=1)
    assert chosen[:2] == [0, 1] and 7 in chosen and 99 not in chosen
    arrays = gallery_arrays(data, records, chosen, evaluator.map_names)
    assert set(arrays) == {"index", "image", "label", "prediction", "keep", "energy", "cam", "mask"}
    n = len(chosen)
    assert arrays["image"].shape == (n, 64, 64, 3) and arrays["image"].dtype == np.uint8
    assert arrays["keep"].shape == (n, *ersm.grid) and arrays["mask"].shape == (n, 64, 64)
