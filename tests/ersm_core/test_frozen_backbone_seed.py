"""A frozen backbone built without weights is the experiment's, drawn from one fixed seed whatever the training seed."""

import torch

from ersm_core.config import ModelConfig
from ersm_core.model import FROZEN_BACKBONE_SEED, ERSMModel, seed_free_backbone

CONFIG = ModelConfig(backbone="compact_cnn", variant="ersm_full", image_size=32, num_classes=4, freeze_backbone=True)


def _model(seed: int) -> ERSMModel:
    torch.manual_seed(seed)
    return ERSMModel(CONFIG)


def test_backbone_from_the_fixed_seed_and_the_rest_from_the_training_seed():
    a, b = _model(3), _model(5)
    assert not torch.equal(next(iter(a.backbone.parameters())), next(iter(b.backbone.parameters())))
    head_b = {k: v.clone() for k, v in b.state_dict().items() if not k.startswith("backbone.")}
    seed_free_backbone(a, CONFIG)
    seed_free_backbone(b, CONFIG)
    reference = _model(FROZEN_BACKBONE_SEED).backbone.state_dict()
    for model in (a, b):
        state = model.backbone.state_dict()
        assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert all(torch.equal(b.state_dict()[k], v) for k, v in head_b.items())  # only the backbone was replaced


def test_the_global_random_state_is_left_as_it_was():
    model = _model(7)
    before = torch.random.get_rng_state()
    seed_free_backbone(model, CONFIG)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_seed_zero_is_unchanged():
    model = _model(FROZEN_BACKBONE_SEED)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    seed_free_backbone(model, CONFIG)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.items())
