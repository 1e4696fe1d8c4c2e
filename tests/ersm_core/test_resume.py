"""Resuming a stopped training run gives the run that was never stopped (same seed, CPU)."""

import pandas as pd
import pytest
import torch

from ersm_core.errors import CheckpointError, ConfigError
from ersm_core.model import ModelConfig
from ersm_core.training import HISTORY_COLUMNS, TrainConfig, TrainProgress, load_state, train

COLUMNS = [c for c in HISTORY_COLUMNS if c != "seconds"]
TINY = dict(dataset="synthetic", n_train=48, n_test=16, batch_size=16, device="cpu", epochs=3)


class _StopBefore(TrainProgress):
    def __init__(self, epoch):
        self.epoch = epoch

    def epoch_start(self, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _same(a, b):
    pd.testing.assert_frame_equal(a.history[COLUMNS], b.history[COLUMNS], check_exact=True)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("model, options", [
    # flips and dropout-free ERSM: the flips draw from torch's global RNG, the loader from its own generator
    (dict(variant="ersm_full"), dict(augment=True)),
    # cached features with seeded views; l0 draws random gates while training
    (dict(variant="l0", freeze_backbone=True), dict(feature_views=2)),
])
def test_stopped_and_resumed_equals_uninterrupted(tmp_path, model, options):
    model_config = ModelConfig(num_classes=10, image_size=32, **model)
    config = TrainConfig(**TINY, **options)
    whole = train(model_config, config, state_file=tmp_path / "whole.state.pt")
    state = tmp_path / "m.state.pt"
    with pytest.raises(KeyboardInterrupt):
        train(model_config, config, state_file=state, progress=_StopBefore(3))
    saved = load_state(state)
    assert saved["epoch"] == 2 and len(saved["rows"]) == 2
    assert set(saved["rng"]) == {"python", "numpy", "torch", "cuda"}
    resumed = train(model_config, config, state_file=state, resume=True)
    _same(whole, resumed)
    assert [r["seconds"] for r in resumed.provenance["history"][:2]] == [r["seconds"] for r in saved["rows"]]  # kept rows


def test_a_run_stopped_in_its_test_pass_resumes_to_the_test_pass(tmp_path):
    class StopInTest(TrainProgress):
        def test_start(self, test_batches):
            raise KeyboardInterrupt

    model_config = ModelConfig(num_classes=10, image_size=32, variant="ersm_unary")
    config = TrainConfig(**{**TINY, "epochs": 2})
    whole = train(model_config, config)
    state = tmp_path / "m.state.pt"
    with pytest.raises(KeyboardInterrupt):
        train(model_config, config, state_file=state, progress=StopInTest())
    assert load_state(state)["epoch"] == 2
    _same(whole, train(model_config, config, state_file=state, resume=True))


def test_saving_the_state_changes_nothing(tmp_path):
    model_config = ModelConfig(num_classes=10, image_size=32, variant="l0")
    config = TrainConfig(**{**TINY, "epochs": 2})
    _same(train(model_config, config), train(model_config, config, state_file=tmp_path / "s.state.pt"))
    assert load_state(tmp_path / "s.state.pt")["epoch"] == 2


def test_resume_refuses_other_options_and_a_missing_state(tmp_path):
    model_config = ModelConfig(num_classes=10, image_size=32, variant="baseline")
    config = TrainConfig(**TINY)
    state = tmp_path / "m.state.pt"
    with pytest.raises(ConfigError, match=r"nothing to resume: no training state at .*m.state.pt"):
        train(model_config, config, state_file=state, resume=True)
    with pytest.raises(KeyboardInterrupt):
        train(model_config, config, state_file=state, progress=_StopBefore(2))
    with pytest.raises(ConfigError, match=r"cannot resume from .*: the run was started with other options \(lr 0.001 → 0.002\)"):
        train(model_config, TrainConfig(**TINY, lr=2e-3), state_file=state, resume=True)
    with pytest.raises(ConfigError, match=r"other options \(alpha 0.001 → 0.01\)"):
        train(ModelConfig(num_classes=10, image_size=32, variant="baseline", alpha=0.01), config, state_file=state,
              resume=True)
    state.write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="not a readable ersm-eval training state"):
        train(model_config, config, state_file=state, resume=True)


def test_state_holds_only_plain_types_and_tensors(tmp_path):
    """Read back with weights_only=True (no code), every leaf a plain value or a tensor."""
    model_config = ModelConfig(num_classes=10, image_size=32, variant="ersm_full")
    state = tmp_path / "m.state.pt"
    with pytest.raises(KeyboardInterrupt):
        train(model_config, TrainConfig(**TINY), state_file=state, progress=_StopBefore(2))
    payload = torch.load(state, weights_only=True)

    def leaves(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from leaves(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from leaves(v)
        else:
            yield value

    kinds = {type(v) for v in leaves(payload)}
    assert kinds <= {int, float, str, bool, type(None), torch.Tensor}, kinds
