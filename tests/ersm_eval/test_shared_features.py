"""The shared backbone memo and the backbone key."""

from __future__ import annotations

import torch

from ersm_core.model import ModelConfig, build_model
from ersm_eval.shared_features import SharedBackbone, backbone_key, shared_backbone


def test_equal_content_is_computed_once_and_other_content_again():
    calls = []

    def compute(x):
        calls.append(x.shape[0])
        return x * 2

    shared = SharedBackbone(compute)
    x = torch.arange(6.0).reshape(2, 3)
    first = shared(x)
    again = shared(x.clone())  # a new tensor of equal value: answered from the memo
    assert again is first and calls == [2] and shared.hits == 1
    other = shared(x + 1)
    assert torch.equal(other, (x + 1) * 2) and calls == [2, 2] and shared.passes == 2
    shared.clear()
    shared(x)
    assert calls == [2, 2, 2]


def test_shared_models_give_their_own_outputs_from_one_backbone_pass():
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3, image_size=32, variant="ersm_full")
    a, b = build_model(config).eval(), build_model(config).eval()
    b.backbone.load_state_dict(a.backbone.state_dict())
    assert backbone_key(a) == backbone_key(b)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = (a(x), b(x))
        with shared_backbone([a, b]) as shared:
            got = (a(x), b(x))
        assert shared.passes == 1 and shared.hits == 1
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert not torch.equal(got[0], got[1])  # the heads are each model's own
    assert "forward_features" not in a.__dict__  # restored


def test_backbone_key_tells_different_backbones_and_transforms_apart():
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3, image_size=32)
    a, b = build_model(config), build_model(config)
    assert backbone_key(a) != backbone_key(b)  # other random backbone weights
    assert backbone_key(a, {"image_size": 32}) != backbone_key(a, {"image_size": 40})


def test_inputs_sharing_a_key_get_their_own_features():
    shared = SharedBackbone(lambda x: x + 1)
    x = torch.zeros(1, 3, 64, 64)
    y = x.clone()
    y[0, 0, 0, 1] = 5.0  # a value the key's sample skips: same key, other content
    assert shared._key(x) == shared._key(y)
    assert torch.equal(shared(x), x + 1) and torch.equal(shared(y), y + 1) and shared.passes == 2
