"""Backbone features for feature-level evaluations do not depend on the batch size."""

from __future__ import annotations

import torch

from ersm_core.data import ImageTransform, build_dataset
from ersm_core.model import ModelConfig, build_model
from ersm_eval.features import feature_batches


def test_features_are_bitwise_the_same_for_every_batch_size():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=5, image_size=64)).eval()
    transform = ImageTransform(image_size=64, mean=(0.5,) * 3, std=(0.25,) * 3)
    dataset = build_dataset("synthetic", "test", transform, n_test=13, num_classes=5)
    indices = list(range(13))
    runs = {}
    for batch_size in (1, 5, 13):
        parts = list(feature_batches(model, dataset, indices, batch_size=batch_size))
        assert [len(p["index"]) for p in parts][0] == batch_size
        runs[batch_size] = torch.cat([p["features"] for p in parts])
        assert torch.equal(torch.cat([p["index"] for p in parts]), torch.arange(13))
    assert torch.equal(runs[1], runs[5]) and torch.equal(runs[1], runs[13])
