"""One evaluator contract: the three evaluators satisfy one Protocol, one driver runs each, their
settings are validated once, empty input fails the same way, and wrap's result is a SpatialClassifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from ersm_core.errors import DatasetError
from ersm_core.model import ModelConfig, build_model
from ersm_eval import wrap
from ersm_eval.api import run_evaluator
from ersm_eval.contract import Evaluator, SpatialClassifier
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings
from ersm_eval.occlusion import OcclusionConfig, OcclusionEvaluator, OcclusionSettings
from ersm_eval.records import sort_records
from ersm_eval.sparsity import SparsityEvaluator, SparsitySettings

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES = 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(variant="ersm_full", num_classes=3, image_size=32)).eval()


@pytest.fixture(scope="module")
def loader():
    """A tiny synthetic loader: (x, y) batches of 2, 2 and 1 images with object masks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_IMAGES, 3, 32, 32, generator=g)
    y = torch.randint(0, 3, (N_IMAGES,), generator=g)
    masks = torch.zeros(N_IMAGES, 32, 32)
    masks[:, 8:24, 8:24] = 1.0
    return [(x[i : i + 2], y[i : i + 2], {"mask": masks[i : i + 2]}) for i in range(0, N_IMAGES, 2)]


def _evaluators(model):
    return {
        "deletion": DeletionEvaluator(model, DeletionSettings(rankings=("energy", "random"), seeds=(0,), n_boot=20)),
        "occlusion": OcclusionEvaluator(model, OcclusionSettings(patterns=("center",), severities=(0.5,)),
                                        model.mean, model.std, label="m"),
        "sparsity": SparsityEvaluator(model, SparsitySettings(n_boot=20, label="m")),
    }


def test_the_three_evaluators_satisfy_one_protocol(model):
    for name, evaluator in _evaluators(model).items():
        assert isinstance(evaluator, Evaluator), name
    assert not isinstance(object(), Evaluator)  # the check has teeth: a plain object is no evaluator


@pytest.mark.parametrize("name", ["deletion", "occlusion", "sparsity"])
def test_one_driver_runs_each_evaluator(model, loader, name):
    evaluator = _evaluators(model)[name]
    seen = []
    returned = run_evaluator(evaluator, loader, progress=seen.append)
    assert returned is evaluator and seen == [2, 2, 1] and evaluator.n_images == N_IMAGES
    records = evaluator.records()
    assert records["index"].tolist() == list(range(N_IMAGES))  # positions in the loader
    tables = evaluator.compute(records)
    assert tables and all(isinstance(t, pd.DataFrame) and len(t) for t in tables.values())
    # records in any order give the same tables
    shuffled = {k: v[::-1].copy() for k, v in records.items()}
    again = evaluator.compute(shuffled)
    for table in tables:
        pd.testing.assert_frame_equal(tables[table], again[table])
    evaluator.reset()
    assert evaluator.n_images == 0


def test_the_driver_builds_an_evaluator_from_the_first_batch(model, loader):
    firsts = []

    def build(batch):
        firsts.append(batch["image"].shape[0])
        return SparsityEvaluator(model, SparsitySettings(n_boot=20))

    evaluator = run_evaluator(build, loader)
    assert firsts == [2] and evaluator.n_images == N_IMAGES
    with pytest.raises(DatasetError, match="the loader gave no images"):
        run_evaluator(build, [])


@pytest.mark.parametrize("name", ["deletion", "occlusion", "sparsity"])
def test_empty_input_is_the_same_error_everywhere(model, name):
    evaluator = _evaluators(model)[name]
    message = f"no images were evaluated, so there is nothing to compute for {name}"
    with pytest.raises(DatasetError, match=message):
        evaluator.records()
    with pytest.raises(DatasetError, match=message):
        evaluator.compute()


def test_settings_are_validated_once_with_value_errors():
    with pytest.raises(ValueError, match="unknown deletion level"):
        DeletionSettings(level="pixel")
    with pytest.raises(ValueError, match="at least one fill"):
        OcclusionSettings(fills=())
    with pytest.raises(ValueError, match=r"fractions of a map's maximum in \(0, 1\), got 1.5"):
        SparsitySettings(iou_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="n_boot must be at least 10"):
        SparsitySettings(n_boot=3)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        SparsitySettings(seed=0.5)
    assert SparsitySettings(iou_thresholds=[0.5]).iou_thresholds == (0.5,)  # frozen, as tuples
    assert OcclusionConfig is OcclusionSettings  # the former name
    settings = OcclusionSettings(fills=("mean",), seeds=(2, 2))
    assert OcclusionSettings.from_dict(settings.to_dict()) == settings


def test_sort_records_sorts_every_array_and_refuses_repeats():
    records = {"index": np.array([2, 0, 1]), "value": np.array([[20], [0], [10]])}
    out = sort_records(records, "occlusion")
    assert out["index"].tolist() == [0, 1, 2] and out["value"][:, 0].tolist() == [0, 10, 20]
    with pytest.raises(ValueError, match="occlusion records hold dataset indices more than once"):
        sort_records({"index": np.array([1, 1])}, "occlusion")


def test_wrap_returns_a_spatial_classifier(model):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    wrapped = wrap(resnet, layer="layer4")
    wrapped.forward_features(torch.zeros(1, 3, 64, 64))  # the grid is known after one look
    assert isinstance(wrapped, SpatialClassifier)
    assert isinstance(wrap(model), SpatialClassifier)  # the project's model as it is
    assert not isinstance(resnet, SpatialClassifier)  # a plain torchvision model is not split
