"""The one CAM (ersm_eval.cam): by hand on a tiny model, exact for a linear head, gradient x input otherwise."""

import pytest
import torch

from ersm_core.model import ModelConfig, build_model
from ersm_eval.cam import cam_scores, token_sums, token_values
from ersm_eval.maps import model_maps


def _model(**kw):
    torch.manual_seed(kw.pop("seed", 0))
    return build_model(ModelConfig(**{"num_classes": 3, "image_size": 32, **kw})).eval()


class _Hand:
    """A linear head over 2 channels and 3 classes on a map of 2x2 tokens of P = 1."""

    head_is_linear = True

    def __init__(self):
        self.config = type("C", (), {"patch_size": 1})()
        self.head = torch.nn.Linear(2, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -10.0, 0.5]))


def test_cam_by_hand():
    model = _Hand()
    # channel 0 = [[4, 0], [0, 0]], channel 1 = [[1, 1], [1, 5]]; H·W = 4
    fmap = torch.tensor([[[[4.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 5.0]]]])
    # pooled = (1, 2); logits = (1, 4 - 10, 1 - 2 + 0.5) = (1, -6, -0.5): class 0 predicted
    cam, pred = cam_scores(model, fmap)
    assert pred.tolist() == [0]
    assert cam[0].tolist() == pytest.approx([4 / 4, 0.0, 0.0, 0.0])
    # class 2 asked for: W[2] · token / 4 = (4 - 1, 0 - 1, 0 - 1, 0 - 5) / 4
    cam2, target = cam_scores(model, fmap, torch.tensor([2]))
    assert target.tolist() == [2]
    assert cam2[0].tolist() == pytest.approx([0.75, -0.25, -0.25, -1.25])
    assert cam2.sum().item() == pytest.approx(-0.5 - 0.5)  # the logit minus the bias
    assert token_sums(fmap, 1)[0].tolist() == [[4.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 5.0]]
    assert token_values(model, fmap).dtype == torch.float64


def test_patches_sum_their_positions():
    fmap = torch.arange(16.0).reshape(1, 1, 4, 4)
    # 2x2 patches: top-left 0+1+4+5, top-right 2+3+6+7, ...
    assert token_sums(fmap, 2)[0, :, 0].tolist() == [10.0, 18.0, 42.0, 50.0]


def test_cam_is_exact_for_a_linear_head():
    model = _model(variant="ersm_full")
    with torch.no_grad():
        feats = model.forward_features(torch.randn(4, 3, 32, 32))
        cam, pred = cam_scores(model, feats)
        logits = model.forward_head(model.pool(feats))
    assert torch.equal(pred, logits.argmax(1))
    chosen = logits.gather(1, pred[:, None])[:, 0] - model.head.bias[pred]
    torch.testing.assert_close(cam.sum(1), chosen, atol=1e-5, rtol=1e-5)


def test_cam_of_a_nonlinear_head_is_gradient_times_input():
    model = _model(variant="baseline")
    model.pre_logits = torch.nn.Tanh()
    assert not model.head_is_linear
    gated = torch.rand(2, model.channels, *model.feature_hw)
    target = torch.tensor([0, 1])
    cam, used = cam_scores(model, gated, target)
    assert used.tolist() == [0, 1]
    pooled = model.pool(gated).requires_grad_(True)
    logit = model.forward_head(pooled).gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(logit, pooled)
    torch.testing.assert_close(cam.sum(1), (grad * model.pool(gated)).sum(1), rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # no gradients leak into the model


def test_the_maps_cam_is_this_cam_at_the_prediction():
    model = _model(variant="ersm_full")
    images = torch.randn(3, 3, 32, 32)
    maps = model_maps(model, images, chunk=3)
    with torch.no_grad():
        gated = model.gate(model.forward_features(images))
        cam, _ = cam_scores(model, gated, maps["logits"].argmax(1))
    torch.testing.assert_close(maps["cam"].reshape(3, -1), cam)
