"""wrap(): ERSM models pass through, timm models and any nn.Module split into map → GAP → head."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig, build_model
from ersm_eval import ModelAdapter, wrap

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _split(model) -> torch.Tensor:
    return model.forward_head(model.pool(model.gate(model.forward_features(_images()))))


@torch.no_grad()
def test_torchvision_resnet_split_reproduces_logits():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    model = wrap(net, layer="layer4")
    assert isinstance(model, ModelAdapter)
    torch.testing.assert_close(_split(model), net(_images()), atol=1e-5, rtol=0)
    assert model.grid == (2, 2) and model.n_tokens == 4  # 64 px / 32
    assert model.head is net.fc and model.head_is_linear and model.head_name == "fc"
    assert not model.has_energy and not model.has_gate
    assert model.config.variant == "ResNet" and model.config.patch_size == 1
    torch.testing.assert_close(model(_images()), net(_images()))


@torch.no_grad()
def test_token_scores_are_magnitudes_and_gate_is_identity():
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    model = wrap(net, layer="layer4")
    features = torch.zeros(1, 512, 2, 2)
    features[0, 0, 0, 1] = 3.0
    features[0, 1, 0, 1] = 4.0  # token 1: norm 5
    features[0, 7, 1, 1] = -2.0  # token 3: norm 2
    model.forward_features(_images(1))  # fixes the grid
    scores = model.token_scores(features)
    assert set(scores) == {"magnitude", "grid"} and scores["grid"] == (2, 2)
    torch.testing.assert_close(scores["magnitude"], torch.tensor([[0.0, 5.0, 0.0, 2.0]]))
    assert model.gate(features) is features
    torch.testing.assert_close(model.pool(features), features.mean((2, 3)))


@pytest.mark.parametrize("name, linear", [("resnet18", True), ("convnext_atto", False)])
@torch.no_grad()
def test_timm_model_needs_no_arguments(name, linear):
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=5).eval()
    model = wrap(net)
    torch.testing.assert_close(_split(model), net(_images()), atol=1e-5, rtol=0)
    assert model.kind == "timm" and model.config.variant == f"timm {name}"
    assert model.head_is_linear is linear  # ConvNeXt has a norm between the pooling and its classifier
    assert model.head is net.get_classifier()
    assert model.mean == (0.485, 0.456, 0.406)  # from the timm pretrained config
    assert model.check_split(_images(2)) <= 1e-5


@torch.no_grad()
def test_ersm_model_passes_through():
    torch.manual_seed(0)
    net = build_model(ModelConfig(num_classes=3, image_size=32, variant="ersm_full")).eval()
    assert wrap(net) is net
    x = _images(size=32)
    torch.testing.assert_close(net.forward_head(net.pool(net.gate(net.forward_features(x)))), net(x), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="split already"):
        wrap(net, layer="backbone")


def test_lone_image_equals_its_row_in_a_batch():
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    model = wrap(net, layer="layer4").eval()
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x[:1]), model.forward_features(x.expand(2, -1, -1, -1))[:1])


def test_user_errors_say_how_to_fix_them():
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    with pytest.raises(ConfigError, match=r"needs layer= .* layer1, layer2, layer3, layer4, avgpool, fc"):
        wrap(net)
    with pytest.raises(ConfigError, match="no submodule named layer='layer9'"):
        wrap(net, layer="layer9")
    with pytest.raises(ConfigError, match="cannot run its head on the pooled map"):
        wrap(net, layer="layer3").check_split(_images(2))
    with pytest.raises(ConfigError, match="no nn.Linear"):
        wrap(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)), layer="0")
    with pytest.raises(ConfigError, match="global average pooling"):
        wrap(timm.create_model("resnet18", pretrained=False, num_classes=3, global_pool="max"))
    with pytest.raises(ConfigError, match="only after it has seen an image"):
        wrap(net, layer="layer4").grid


def test_check_split_refuses_a_model_that_does_more_than_pooling():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3, stride=8)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(2.0 * self.body(x).mean((2, 3)))  # a factor 2 after the split point

    with pytest.raises(ConfigError, match="does not reproduce its logits"):
        wrap(Scaled(), layer="body").check_split(_images(2))
