"""Model variants, the shared skeleton's pieces, timm backbones, freezing and local weights."""

import pytest
import torch
import torch.nn.functional as F

from ersm_core.energy import energy_loss
from ersm_core.errors import CheckpointError, ConfigError
from ersm_core.l0 import expected_l0
from ersm_core.model import VARIANTS, ModelConfig, build_model

ALL_VARIANTS = ["baseline", "dropblock", "spatial_dropout", "l0", "ersm_unary", "ersm_full"]
ERSM_KEYS = {"unary", "keep", "energy_unary", "energy_pairwise", "energy", "magnitude", "grid"}
SCORE_KEYS = {
    "baseline": {"magnitude", "grid"},
    "dropblock": {"magnitude", "grid"},
    "spatial_dropout": {"magnitude", "grid"},
    "l0": {"keep", "magnitude", "grid"},
    "ersm_unary": ERSM_KEYS,
    "ersm_full": ERSM_KEYS,
}


def _tiny(variant: str, **kwargs):
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=3, variant=variant, image_size=64, **kwargs))


@pytest.fixture
def images():
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_registry_holds_every_variant():
    assert VARIANTS.names() == ALL_VARIANTS
    with pytest.raises(ConfigError, match="valid names: baseline, dropblock"):
        ModelConfig(num_classes=3, variant="ersm_triple")


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_trains_one_step(variant, images):
    model = _tiny(variant).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    logits, aux = model(images, return_aux=True)
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])) + aux["reg_loss"]
    assert torch.isfinite(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss.backward()
    opt.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert "head.weight" in changed and "backbone.body.0.weight" in changed
    if model.has_gate:  # the gate's own parameters learn too
        assert any(k.startswith("spatial.") for k in changed)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_eval_is_deterministic_and_equals_the_pieces(variant, images):
    model = _tiny(variant).eval()
    with torch.no_grad():
        first, second = model(images), model(images)
        pieces = model.forward_head(model.pool(model.gate(model.forward_features(images))))
    assert torch.equal(first, second)
    assert torch.allclose(first, pieces, atol=1e-6)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_token_scores_keys_per_variant(variant, images):
    model = _tiny(variant).eval()
    assert model.has_energy == (variant in ("ersm_unary", "ersm_full"))
    assert model.has_gate == (variant in ("l0", "ersm_unary", "ersm_full"))
    with torch.no_grad():
        scores = model.token_scores(model.forward_features(images))
    assert set(scores) == SCORE_KEYS[variant]
    assert scores["grid"] == model.grid == (4, 4) and model.n_tokens == 16
    for key, value in scores.items():
        if key != "grid":
            assert value.shape == (4, 16), key


@pytest.mark.parametrize("variant", ["ersm_unary", "ersm_full"])
def test_ersm_aux_is_the_expected_energy_of_the_same_pass(variant, images):
    model = _tiny(variant, alpha=0.5, beta=0.3).train()
    logits, aux = model(images, return_aux=True)
    with torch.no_grad():
        scores = model.token_scores(model.forward_features(images))
    assert torch.allclose(aux["keep"], scores["keep"])
    assert aux["reg_loss"].item() == pytest.approx(energy_loss(scores["keep"], scores["energy"]).item(), rel=1e-5)
    assert aux["reg_loss"].requires_grad
    if variant == "ersm_unary":
        assert model.config.beta == 0.0 and torch.count_nonzero(scores["energy_pairwise"]) == 0
    else:
        assert torch.count_nonzero(scores["energy_pairwise"]) > 0


def test_l0_aux_is_lambda_times_expected_l0(images):
    model = _tiny("l0", l0_lambda=0.2).eval()
    with torch.no_grad():
        _, aux = model(images, return_aux=True)
        feats = model.forward_features(images)
        log_alpha, _ = model.spatial.log_alpha(feats)
        scores = model.token_scores(feats)
    assert aux["reg_loss"].item() == pytest.approx(0.2 * expected_l0(log_alpha).mean().item(), rel=1e-5)
    assert torch.allclose(aux["keep"], scores["keep"])


@pytest.mark.parametrize("variant", ["baseline", "dropblock", "spatial_dropout"])
def test_regularizer_free_variants_have_zero_loss_term(variant, images):
    _, aux = _tiny(variant).train()(images, return_aux=True)
    assert aux["reg_loss"].item() == 0.0 and "keep" not in aux


def test_ersm_full_needs_beta():
    with pytest.raises(ConfigError, match="beta > 0"):
        ModelConfig(num_classes=3, variant="ersm_full", beta=0.0)


def test_config_round_trips_through_a_plain_dict():
    config = ModelConfig(num_classes=4, variant="l0", mean=(0.1, 0.2, 0.3), std=(1, 1, 1))
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({**config.to_dict(), "gamma": 1.0})


def test_timm_resnet18_builds_with_a_linear_head():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=5, backbone="resnet18", image_size=64, pretrained=False)).eval()
    assert model.head_is_linear and model.channels == 512 and model.grid == (2, 2)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_timm_convnext_keeps_its_norm_as_pre_logits():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=5, backbone="convnext_tiny", image_size=64, pretrained=False)).eval()
    assert not model.head_is_linear
    assert "norm" in type(model.pre_logits.norm).__name__.lower()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.allclose(model(x), model.forward_head(model.pool(model.gate(feats))), atol=1e-5)
        pooled = model.pool(model.gate(feats))
        normed = model.pre_logits(pooled)
        assert not torch.allclose(normed, pooled)  # the norm is applied, not skipped


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9000'"):
        build_model(ModelConfig(num_classes=3, backbone="resnet9000"))


def test_compact_cnn_refuses_pretrained():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_model(ModelConfig(num_classes=3, pretrained=True))


def test_frozen_backbone_gets_no_gradients_and_stays_in_eval():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, backbone="resnet18", image_size=64, freeze_backbone=True))
    model.train()
    assert not model.backbone.training and model.spatial.training and model.training
    bn = model.backbone.bn1
    running_mean = bn.running_mean.clone()
    logits, aux = model(torch.randn(4, 3, 64, 64), return_aux=True)
    (F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])) + aux["reg_loss"]).backward()
    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    assert torch.equal(bn.running_mean, running_mean)  # eval-mode BatchNorm: statistics unchanged
    assert model.head.weight.grad is not None
    assert model.spatial.template.weight.grad is not None and model.spatial.bias.grad is not None


def test_local_backbone_weights_load_exactly(tmp_path):
    config = ModelConfig(num_classes=3, backbone="resnet18", image_size=64)
    torch.manual_seed(0)
    source = build_model(config).eval()
    path = tmp_path / "resnet18_backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    torch.manual_seed(123)
    fresh = build_model(config).eval()
    loaded = build_model(config, weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(x), source.forward_features(x))
        assert not torch.equal(fresh.forward_features(x), source.forward_features(x))


def test_weights_with_a_classifier_are_accepted(tmp_path):
    import timm

    torch.manual_seed(0)
    full = timm.create_model("resnet18", pretrained=False)  # keeps fc.weight / fc.bias
    path = tmp_path / "resnet18_full.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    model = build_model(ModelConfig(num_classes=3, backbone="resnet18", image_size=64), weights=str(path))
    assert torch.equal(model.backbone.conv1.weight, full.conv1.weight)


def test_mismatched_weights_are_a_checkpoint_error(tmp_path):
    torch.manual_seed(0)
    compact = build_model(ModelConfig(num_classes=3, image_size=64))
    path = tmp_path / "compact.pt"
    torch.save(compact.backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit this backbone"):
        build_model(ModelConfig(num_classes=3, backbone="resnet18", image_size=64), weights=str(path))
    with pytest.raises(CheckpointError, match="weights file not found"):
        build_model(ModelConfig(num_classes=3, image_size=64), weights=str(tmp_path / "missing.pt"))
