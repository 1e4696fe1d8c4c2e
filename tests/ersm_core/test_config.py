"""ersm_core.config (the one home of the configs and their bounds) and ersm_core.plain."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ersm_core.config import MAX_VALUES, ModelConfig, TrainConfig, check_max, field_kinds
from ersm_core.errors import ConfigError
from ersm_core.plain import depth_problem, to_plain


def test_model_and_training_modules_re_export_the_config_classes():
    import ersm_core
    import ersm_core.model
    import ersm_core.training

    assert ersm_core.model.ModelConfig is ModelConfig is ersm_core.ModelConfig
    assert ersm_core.training.TrainConfig is TrainConfig
    assert ersm_core.model.MAX_IMAGE_SIZE == MAX_VALUES["image_size"] == 1024


def test_upper_bounds_are_checked_once_in_the_configs():
    with pytest.raises(ConfigError, match=r"alpha must be at most 1e\+06, got 2e\+06"):
        ModelConfig(num_classes=2, alpha=2e6)
    with pytest.raises(ConfigError, match="patch_size must be at most 1024, got 2000"):
        ModelConfig(num_classes=2, patch_size=2000, image_size=1024, backbone="resnet18")
    with pytest.raises(ConfigError, match="feature_views must be at most 64, got 65"):
        TrainConfig(feature_views=65)
    with pytest.raises(ConfigError, match="weight_decay must be at most 10, got 11"):
        TrainConfig(weight_decay=11.0)
    assert ModelConfig(num_classes=2, alpha=1e6).alpha == 1e6  # the bound itself is allowed
    check_max("lr", float("nan"))  # non-finite values get their own message elsewhere
    check_max("not_a_bounded_field", 10**20)


def test_unknown_variant_lists_built_in_and_registered_names():
    from ersm_core.model import VARIANTS, Identity2d

    with pytest.raises(ConfigError, match="valid names: baseline, dropblock, spatial_dropout, l0, ersm_unary, ersm_full$"):
        ModelConfig(num_classes=2, variant="nope")
    VARIANTS.register("test_identity")(lambda channels, cfg, n: Identity2d())
    try:
        assert ModelConfig(num_classes=2, variant="test_identity").variant == "test_identity"
    finally:
        VARIANTS.unregister("test_identity")


def test_field_kinds_drive_the_checkpoint_checks():
    kinds = field_kinds(ModelConfig)
    assert kinds["num_classes"] == kinds["image_size"] == "int"
    assert kinds["alpha"] == "float" and kinds["variant"] == "str" and kinds["pretrained"] == "bool"
    assert kinds["mean"] == kinds["std"] == "vector"
    assert field_kinds(TrainConfig)["data_root"] == "str"  # Optional fields: their kind


def test_train_config_feature_cache_dir():
    assert TrainConfig(feature_cache_dir=Path("/x/y")).feature_cache_dir == "/x/y"
    with pytest.raises(ConfigError, match="feature_cache_dir applies to cached training only"):
        TrainConfig(feature_cache_dir="/x", feature_cache=False)


def test_to_plain_by_hand():
    class Version(str):
        pass

    value = {1: (np.float64(0.5), np.int64(3), np.bool_(True)), "v": Version("2.1"), "p": Path("/a"),
             "t": torch.tensor([1, 2]), "s": torch.tensor(1.5), "n": None, "nested": [{"k": (1, 2)}]}
    plain = to_plain(value)
    assert plain == {"1": [0.5, 3, True], "v": "2.1", "p": "/a", "t": [1, 2], "s": 1.5, "n": None,
                     "nested": [{"k": [1, 2]}]}
    assert type(plain["v"]) is str and type(plain["1"][0]) is float and type(plain["1"][1]) is int
    assert type(plain["1"][2]) is bool
    assert math.isnan(to_plain(float("nan")))


def test_depth_problem_by_hand():
    assert depth_problem(5, 0) is None
    assert depth_problem({}, 1) is None and depth_problem({}, 0) == "nested more than 0 levels deep"
    assert depth_problem({"a": [1, {"b": 2}]}, 3) is None
    assert depth_problem({"a": [1, {"b": 2}]}, 2) == "nested more than 2 levels deep"
    deep: list = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert depth_problem(deep, 32) == "nested more than 32 levels deep"
