"""The functional API: loaders of (x, y) / (x, y, extra) / dicts, external rankings, results and their summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

import ersm_eval
from ersm_core.errors import ConfigError, DatasetError
from ersm_core.model import ModelConfig, build_model
from ersm_eval import EvaluationResult, check_summary, load_summary, tokens_from_maps, wrap
from ersm_eval.results import SUMMARY_SCHEMA_VERSION, summary_schema

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES = 6
FAST = {"seeds": (0,), "n_boot": 20}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_IMAGES, 3, 64, 64, generator=g)
    y = torch.randint(0, 4, (N_IMAGES,), generator=g)
    return x, y


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=4).eval()


def _loader(data, batch_size=4):
    return DataLoader(TensorDataset(*data), batch_size=batch_size)


# -- pooling external maps to tokens ----------------------------------------------------------
def test_tokens_from_maps_by_hand():
    grid_maps = torch.arange(4.0).reshape(1, 2, 2)
    torch.testing.assert_close(tokens_from_maps(grid_maps, (2, 2)), torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.float64))
    pixels = torch.arange(16.0).reshape(1, 4, 4)  # rows 0 1 2 3 / 4 5 6 7 / ...
    expected = torch.tensor([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]],
                            dtype=torch.float64)
    torch.testing.assert_close(tokens_from_maps(pixels, (2, 2)), expected)
    odd = torch.arange(9.0).reshape(1, 3, 3)  # pixel y lies under token floor(2y/3): rows/cols {0, 1} and {2}
    torch.testing.assert_close(tokens_from_maps(odd, (2, 2)),
                               torch.tensor([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2, (6 + 7) / 2, 8.0]], dtype=torch.float64))
    with pytest.raises(ConfigError, match="sum attributions over the colour channels"):
        tokens_from_maps(torch.zeros(1, 3, 4, 4), (2, 2))
    with pytest.raises(ConfigError, match="NaN"):
        tokens_from_maps(torch.full((1, 2, 2), float("nan")), (2, 2))


# -- deletion ----------------------------------------------------------------------------------
def test_external_scores_rank_highest_first(data, resnet):
    """An external map equal to the token norms deletes exactly as magnitude in both orders: MoRF the highest norm
    (the map's highest value) first."""
    model = wrap(resnet, layer="layer4")

    def norms(net, x, y):
        with torch.no_grad():
            return model.token_scores(model.forward_features(x))["magnitude"].reshape(x.shape[0], 2, 2)

    result = ersm_eval.evaluate_deletion(model, _loader(data), scores={"norms": norms},
                                         rankings=("magnitude", "random"), **FAST)
    curves = result.tables["deletion_curves.csv"].set_index(["ranking", "order", "k"])
    assert set(curves.index.get_level_values(0)) == {"magnitude", "random", "norms"}
    for order in ("morf", "lerf"):
        pd.testing.assert_series_equal(curves.loc[("norms", order), "accuracy"], curves.loc[("magnitude", order), "accuracy"])
        pd.testing.assert_series_equal(curves.loc[("norms", order), "mean_true_prob"],
                                       curves.loc[("magnitude", order), "mean_true_prob"])
    orders = result.records["orders"]  # [n, curves, N]: magnitude MoRF, LeRF, random, norms MoRF, LeRF
    np.testing.assert_array_equal(orders[:, 3], orders[:, 0])
    np.testing.assert_array_equal(orders[:, 4], orders[:, 1])
    assert result.summary.evaluation["external_rankings"] == {"norms": "callable"}


def test_tensor_maps_batch_forms_and_batch_size_agree(data, resnet):
    x, y = data
    maps = torch.rand(N_IMAGES, 64, 64, generator=torch.Generator().manual_seed(1))
    kw = dict(scores={"saliency": maps}, rankings=("magnitude", "random"), **FAST)
    tuples = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), _loader(data, 4), **kw)
    dicts = [{"image": x[i : i + 5], "label": y[i : i + 5]} for i in range(0, N_IMAGES, 5)]
    from_dicts = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), dicts, **kw)
    for name in ("deletion_curves.csv", "deletion_summary.csv"):
        a, b = tuples.tables[name], from_dicts.tables[name]
        pd.testing.assert_frame_equal(a.drop(columns=["mean_true_prob"], errors="ignore"),
                                      b.drop(columns=["mean_true_prob"], errors="ignore"), check_exact=False, atol=1e-6)
    # the saliency ranking deletes the token whose pixels have the highest mean first
    tokens = tokens_from_maps(maps, (2, 2))
    k1 = tuples.records["orders"][:, -2, 0]  # first token deleted by saliency's MoRF curve
    np.testing.assert_array_equal(k1, tokens.argmax(1).numpy())


def test_index_from_dict_batches_seeds_random_orders(data, resnet):
    x, y = data
    batches = [{"image": x[:3], "label": y[:3], "index": torch.tensor([10, 11, 12])}]
    result = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), batches, rankings=("random",), **FAST)
    np.testing.assert_array_equal(result.records["index"], [10, 11, 12])
    expected = np.random.default_rng([0, 11]).permutation(4)
    np.testing.assert_array_equal(result.records["orders"][1, 0], expected)


def test_ersm_model_gets_its_energy_rankings(data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, image_size=32, variant="ersm_full")).eval()
    x, y = data
    loader = DataLoader(TensorDataset(x[:, :, :32, :32], y), batch_size=4)
    result = ersm_eval.evaluate_deletion(model, loader, rankings=("energy", "random"), label="ersm", **FAST)
    assert set(result.tables["deletion_summary.csv"]["ranking"]) == {"energy", "random"}
    assert result.summary.model.kind == "ersm" and result.summary.model.has_energy
    assert result.summary.label == "ersm" and result.summary.notes == []


def test_non_ersm_model_skips_energy_rankings_with_a_note(data, resnet):
    result = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), _loader(data),
                                         rankings=("energy", "magnitude", "random"), **FAST)
    assert set(result.tables["deletion_summary.csv"]["ranking"]) == {"magnitude", "random"}
    assert len(result.summary.notes) == 1 and result.summary.notes[0].startswith("ranking energy skipped: needs the Energy-Mask")


def test_user_errors(data, resnet):
    model = wrap(resnet, layer="layer4")
    with pytest.raises(DatasetError, match="shuffle=False"):
        ersm_eval.evaluate_deletion(model, DataLoader(TensorDataset(*data), batch_size=2, shuffle=True))
    with pytest.raises(ConfigError, match="holds 5 maps but the loader gives more images"):
        ersm_eval.evaluate_deletion(model, _loader(data), scores={"s": torch.rand(5, 2, 2)}, **FAST)
    with pytest.raises(ConfigError, match="holds 7 maps but the loader gave 6 images"):
        ersm_eval.evaluate_deletion(model, _loader(data), scores={"s7": torch.rand(7, 2, 2)}, **FAST)
    with pytest.raises(ConfigError, match="taken by a built-in"):
        ersm_eval.evaluate_deletion(model, _loader(data), scores={"cam": torch.rand(6, 2, 2)})
    with pytest.raises(ConfigError, match=r"unknown deletion setting \['stepz'\]"):
        ersm_eval.evaluate_deletion(model, _loader(data), stepz=3)
    with pytest.raises(DatasetError, match="no images"):
        ersm_eval.evaluate_deletion(model, [])
    with pytest.raises(DatasetError, match=r"\(x, y\), \(x, y, extra\) or a dict"):
        ersm_eval.evaluate_deletion(model, [data[0]])
    with pytest.raises(ConfigError, match="black fill needs the images' normalization mean"):
        ersm_eval.evaluate_deletion(model, _loader(data), level="input", fill="black", **FAST)


# -- occlusion and mask statistics ----------------------------------------------------------------
def test_occlusion_runs_object_patterns_when_batches_have_masks(data, resnet):
    x, y = data
    mask = torch.zeros(N_IMAGES, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    batches = [(x[i : i + 3], y[i : i + 3], {"mask": mask[i : i + 3]}) for i in range(0, N_IMAGES, 3)]
    result = ersm_eval.evaluate_occlusion(wrap(resnet, layer="layer4"), batches, patterns=("center", "object"),
                                          severities=(0.5,))
    summary = result.tables["occlusion_summary.csv"]
    assert list(summary["pattern"]) == ["center", "object"] and list(summary["n_images"]) == [N_IMAGES, N_IMAGES]
    without = ersm_eval.evaluate_occlusion(wrap(resnet, layer="layer4"), _loader(data), patterns=("center", "object"),
                                           severities=(0.5,))
    assert list(without.tables["occlusion_summary.csv"]["pattern"]) == ["center"]
    assert without.summary.notes == ["pattern 'object' skipped: the loader has no object masks or boxes"]


def test_mask_statistics_of_an_ersm_model_with_masks(tmp_path, data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, image_size=32, variant="ersm_full")).eval()
    x, y = data
    x = x[:, :, :32, :32]
    mask = torch.zeros(N_IMAGES, 32, 32)
    mask[:, 8:24, 8:24] = 1.0
    batches = [{"image": x[i : i + 4], "label": y[i : i + 4], "mask": mask[i : i + 4]} for i in range(0, N_IMAGES, 4)]
    result = ersm_eval.mask_statistics(model, batches, n_boot=20, class_names=["a", "b", "c", "d"])
    rows = result.tables["sparsity_summary.csv"]
    area = rows.loc[rows["metric"] == "object_area_fraction", "value"].item()
    assert area == pytest.approx(0.25)  # 16×16 of 32×32
    assert {"keep", "energy", "cam"} <= set(result.arrays["maps.npz"])
    assert result.arrays["maps.npz"]["image"].shape == (N_IMAGES, 32, 32, 3)
    assert list(result.tables["per_class_keep.csv"]["class_name"]) == ["a", "b", "c", "d"]


# -- results and the summary schema ---------------------------------------------------------------
def test_schema_file_is_the_versioned_schema():
    schema = summary_schema()
    assert schema["properties"]["schema_version"]["const"] == SUMMARY_SCHEMA_VERSION
    from dataclasses import fields

    from ersm_eval.results import ModelInfo, RunSummary

    assert set(schema["required"]) == {f.name for f in fields(RunSummary)}
    assert set(schema["properties"]["model"]["required"]) == {f.name for f in fields(ModelInfo)}


def test_save_writes_tables_and_a_summary_that_follows_the_schema(tmp_path, data, resnet):
    result = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), _loader(data), rankings=("magnitude", "random"),
                                         save_token_scores=True, **FAST)
    assert isinstance(result, EvaluationResult)
    data_dict = result.summary.to_dict()
    assert check_summary(data_dict) == []
    folder = result.save(tmp_path / "run")
    for name, table in result.tables.items():
        back = pd.read_csv(folder / name)
        assert list(back.columns) == list(table.columns) and len(back) == len(table)
    np.testing.assert_allclose(pd.read_csv(folder / "deletion_curves.csv")["accuracy"],
                               result.tables["deletion_curves.csv"]["accuracy"])
    assert set(np.load(folder / "token_scores.npz")) >= {"index", "orders", "magnitude"}
    back = load_summary(folder)
    assert back == result.summary
    assert back.tables == {n: len(t) for n, t in sorted(result.tables.items())} and back.files == ["token_scores.npz"]
    assert back.model.grid == [2, 2] and back.model.layer == "layer4" and back.n_images == N_IMAGES
    raw = json.loads((folder / "summary.json").read_text())
    assert raw["schema_version"] == SUMMARY_SCHEMA_VERSION and raw["command"] == "deletion"


def test_check_summary_finds_problems(tmp_path, data, resnet):
    good = ersm_eval.evaluate_occlusion(wrap(resnet, layer="layer4"), _loader(data), patterns=("center",),
                                        severities=(0.5,)).summary.to_dict()
    assert check_summary(good) == []
    bad = {**good, "n_images": "six", "extra": 1}
    del bad["label"]
    problems = check_summary(bad)
    assert "summary lacks the key 'label'" in problems
    assert "n_images should be integer, got str" in problems
    assert "summary has an unknown key 'extra'" in problems
    assert check_summary({**good, "schema_version": 99}) == [f"schema_version should be {SUMMARY_SCHEMA_VERSION}, got 99"]
    assert check_summary({**good, "model": {**good["model"], "kind": "keras"}})[0].startswith("model.kind should be one of")
    (tmp_path / "summary.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="does not follow summary_schema.json"):
        load_summary(tmp_path)


def test_external_rankings_leave_the_registry_as_it_was(data, resnet):
    from ersm_eval.rankings import RANKINGS

    before = RANKINGS.names()
    result = ersm_eval.evaluate_deletion(wrap(resnet, layer="layer4"), _loader(data), scores={"ext": torch.rand(6, 2, 2)},
                                         rankings=("random",), **FAST)
    assert RANKINGS.names() == before and "ext" not in RANKINGS
    assert result.summary.evaluation["ranking_descriptions"]["ext"] == "external scores 'ext': s = the map's value"


def _tiny_module():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("labels, pattern", [
    ([0, 7], r"label 7 of the image with index 1 is not a class of the model, whose head has 3 classes"),
    ([-1, 0], r"label -1 of the image with index 0 is not a class"),
])
def test_labels_outside_the_head_are_named(labels, pattern):
    from ersm_core.errors import DatasetError
    from ersm_eval import evaluate_deletion, evaluate_occlusion, mask_statistics, wrap

    x, y = torch.rand(2, 3, 32, 32), torch.tensor(labels)
    model = wrap(_tiny_module(), layer="0")
    common = {"mean": (0, 0, 0), "std": (1, 1, 1)}
    with pytest.raises(DatasetError, match=pattern):
        evaluate_deletion(model, [(x, y)], steps=4, seeds=(0,), **common)
    with pytest.raises(DatasetError, match=pattern):
        evaluate_occlusion(model, [(x, y)], **common)
    with pytest.raises(DatasetError, match=pattern):
        mask_statistics(model, [(x, y)], **common)


def test_images_the_model_cannot_take_and_nan_images_are_named():
    from ersm_core.errors import ConfigError, DatasetError
    from ersm_eval import evaluate_deletion, wrap

    model = wrap(_tiny_module(), layer="0")
    with pytest.raises(ConfigError, match=r"cannot run on the loader's images of shape \(1, 32, 32\)"):
        evaluate_deletion(model, [(torch.rand(2, 1, 32, 32), torch.tensor([0, 1]))], steps=4, seeds=(0,),
                          mean=(0, 0, 0), std=(1, 1, 1))
    nan = torch.rand(2, 3, 32, 32)
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(DatasetError, match=r"non-finite input images .* dataset indices \[1\]"):
        evaluate_deletion(model, [(nan, torch.tensor([0, 1]))], steps=4, seeds=(0,), mean=(0, 0, 0), std=(1, 1, 1))


def test_wrong_types_of_settings_and_score_callables_are_named():
    from ersm_eval import DeletionSettings, evaluate_deletion, wrap

    with pytest.raises(ConfigError, match=r"steps must be a whole number or None \(every k\), got '4'"):
        DeletionSettings(steps="4")
    with pytest.raises(ConfigError, match=r"seeds must be a sequence of whole numbers, got '01'"):
        DeletionSettings(seeds="01")
    model = wrap(_tiny_module(), layer="0")
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match=r"scores\['x'\] returned str, not maps of numbers"):
        evaluate_deletion(model, [(x, y)], steps=4, seeds=(0,), mean=(0, 0, 0), std=(1, 1, 1),
                          scores={"x": lambda *a: "junk"})
    with pytest.raises(ConfigError, match=r"scores\['x'\] returned shape \(2,\); it must return maps \[B, h, w\]"):
        evaluate_deletion(model, [(x, y)], steps=4, seeds=(0,), mean=(0, 0, 0), std=(1, 1, 1),
                          scores={"x": lambda *a: torch.zeros(2)})
