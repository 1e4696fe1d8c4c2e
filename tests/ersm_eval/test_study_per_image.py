"""Per-image study metrics from deletion and sparsity records, against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ersm_eval.studies.per_image import deletion_per_image, sparsity_per_image


def test_deletion_accuracy_sg_and_auc_diff_by_hand():
    # 2 images (given out of order), curves: energy LeRF, energy MoRF, random seeds 0 and 1; k = 0, 1, 2 of 2 tokens
    correct = np.array([
        [[1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]],  # index 5
        [[0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]],  # index 2
    ])
    records = {"index": np.array([5, 2]), "correct": correct}
    evaluation = {"curves": [{"ranking": "energy", "order": "lerf", "seed": -1},
                             {"ranking": "energy", "order": "morf", "seed": -1},
                             {"ranking": "random", "order": "random", "seed": 0},
                             {"ranking": "random", "order": "random", "seed": 1}], "k_values": [0, 1, 2], "n_tokens": 2}
    out = deletion_per_image(records, evaluation)
    np.testing.assert_array_equal(out["accuracy"], [0.0, 1.0])  # index 2 first
    # areas over fraction 0, .5, 1 (trapezoid / 1): index 5: lerf (1+1)/4+(1+0)/4 = .75, morf [1,0,0] -> .25,
    # random mean [1, .5, .5] -> .625; index 2: lerf 0, morf [0,1,0] -> .5, random [0, .5, 0] -> .25
    np.testing.assert_allclose(out["energy_sg"], [0.0 - 0.5, 0.75 - 0.25])
    np.testing.assert_allclose(out["energy_auc_diff_lerf"], [0.0 - 0.25, 0.75 - 0.625])
    np.testing.assert_allclose(out["energy_auc_diff_morf"], [0.5 - 0.25, 0.25 - 0.625])
    assert set(out) == {"accuracy", "energy_sg", "energy_auc_diff_lerf", "energy_auc_diff_morf"}


def test_sparsity_loss_keep_and_localization_excess_by_hand():
    records = {"index": np.array([1, 0]), "true_prob": np.array([0.5, 0.25]), "has_mask": np.array([True, True]),
               "keep_mass": np.array([0.6, 0.9]), "uniform_mass": np.array([0.5, 0.5]),
               "center_mass": np.array([0.7, 0.2])}
    tables = {
        "per_image.csv": pd.DataFrame({"index": [1, 0], "mean_keep": [0.3, 0.8]}),
        "localization.csv": pd.DataFrame({"map": ["keep"], "metric": ["mass_in_object"], "baseline": ["uniform"]}),
    }
    out = sparsity_per_image(records, tables)
    np.testing.assert_allclose(out["loss"], [np.log(4), np.log(2)])
    np.testing.assert_allclose(out["mean_keep"], [0.8, 0.3])
    np.testing.assert_allclose(out["localization_excess"], [0.9 - 0.5, 0.6 - 0.5])


def test_images_without_masks_or_keep_leave_those_metrics_out():
    records = {"index": np.array([0, 1]), "true_prob": np.array([0.5, 0.0]), "has_mask": np.array([True, False]),
               "cam_mass": np.array([0.6, np.nan]), "uniform_mass": np.array([0.5, np.nan]),
               "center_mass": np.array([0.7, np.nan])}
    tables = {"per_image.csv": pd.DataFrame({"index": [0, 1], "mean_keep": [np.nan, np.nan]}),
              "localization.csv": pd.DataFrame({"map": ["cam"], "metric": ["mass_in_object"], "baseline": ["center"]})}
    assert sparsity_per_image(records, tables) == {}  # infinite loss, no keep, an image without mask


def test_accuracy_is_the_model_as_trained_and_k0_of_a_gated_model_is_named_apart():
    from types import SimpleNamespace

    from ersm_eval.studies.per_image import per_image_values

    sparsity_records = {"index": np.array([3, 1]), "prediction": np.array([2, 0]), "label": np.array([2, 1]),
                        "true_prob": np.array([0.5, 0.25]), "has_mask": np.array([False, False])}
    out = sparsity_per_image(sparsity_records, {"per_image.csv": pd.DataFrame({"index": [3, 1],
                                                                              "mean_keep": [0.4, 0.6]})})
    np.testing.assert_array_equal(out["accuracy"], [0.0, 1.0])  # index 1 wrong, index 3 right
    correct = np.array([[[1, 0]], [[0, 0]]])  # k = 0 with the gate replaced by 1: index 3 wrong, index 1 right
    deletion = SimpleNamespace(
        records={"index": np.array([1, 3]), "correct": correct},
        summary=SimpleNamespace(evaluation={"curves": [{"ranking": "random", "order": "random", "seed": 0}],
                                            "k_values": [0, 1], "n_tokens": 1},
                                model=SimpleNamespace(has_gate=True)))
    sparsity = SimpleNamespace(records=sparsity_records, tables={"per_image.csv": pd.DataFrame(
        {"index": [3, 1], "mean_keep": [0.4, 0.6]})})
    np.testing.assert_array_equal(per_image_values(deletion, sparsity)["accuracy"], [0.0, 1.0])  # the gate on
    alone = per_image_values(deletion)
    assert "accuracy" not in alone
    np.testing.assert_array_equal(alone["accuracy_without_gate"], [1.0, 0.0])
    deletion.summary.model.has_gate = False  # no gate: k = 0 is the model's accuracy
    np.testing.assert_array_equal(per_image_values(deletion)["accuracy"], [1.0, 0.0])
