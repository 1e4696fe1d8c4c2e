"""The randomization check of maps: re-initializing from the top, per-image Spearman, the dependence rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from ersm_core.model import ModelConfig, build_model
from ersm_eval.adapter import wrap
from ersm_eval.randomization import (
    RANDOMIZATION_COLUMNS,
    dependence_verdict,
    map_randomization,
    map_spearman,
    own_step,
    randomization_plan,
    randomization_warning,
    randomized_copy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _loader(n: int = 6, size: int = 64, batch: int = 4):
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % 3
    return [{"image": images[i:i + batch], "label": labels[i:i + batch]} for i in range(0, n, batch)]


@pytest.fixture(scope="module")
def ersm():
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=3, image_size=64, variant="ersm_full")).eval()  # 4×4 grid


@pytest.fixture(scope="module")
def table(ersm):
    return map_randomization(ersm, _loader(), steps=("none", "head", "spatial", "backbone_last"), n_boot=50,
                             checkpoint="tiny")


def _value(table: pd.DataFrame, name: str, step: str) -> float:
    rows = table[(table["map"] == name) & (table["randomized"] == step)]
    assert len(rows) == 1, (name, step)
    return float(rows["spearman"].iloc[0])


def test_map_spearman_by_hand():
    a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = np.array([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    rho = map_spearman(a, b)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0) and math.isnan(rho[2])  # constant: none
    # ties take average ranks: [1, 1, 2] → ranks [1.5, 1.5, 3] against [1, 2, 3]: ρ = 0.866…
    assert map_spearman([[1.0, 1.0, 2.0]], [[1.0, 2.0, 3.0]])[0] == pytest.approx(math.sqrt(3) / 2)


def test_table_shape_and_the_unrandomized_step(table):
    assert tuple(table.columns) == RANDOMIZATION_COLUMNS
    assert set(table["map"]) == {"keep", "energy", "cam"}
    assert list(dict.fromkeys(table["randomized"])) == ["none", "head", "spatial", "backbone_last"]
    assert (table["checkpoint"] == "tiny").all() and (table["n_images"] == 6).all()
    for name in ("keep", "energy", "cam"):
        assert _value(table, name, "none") == pytest.approx(1.0, abs=1e-12)
    assert (table["ci_low"] <= table["spearman"] + 1e-12).all()
    assert (table["spearman"] <= table["ci_high"] + 1e-12).all()


def test_head_changes_the_cam_but_not_keep_or_energy(table):
    assert _value(table, "keep", "head") == pytest.approx(1.0, abs=1e-12)  # keep does not read the head
    assert _value(table, "energy", "head") == pytest.approx(1.0, abs=1e-12)
    assert _value(table, "cam", "head") < 0.9


def test_spatial_changes_keep_but_barely_the_pairwise_dominated_energy(table):
    assert _value(table, "keep", "spatial") < 0.9
    assert randomization_warning(table, "keep") is None
    # untrained ERSM-Full: the unary term is nearly constant (b = −logit(0.9), a small template), so the
    # energy's order comes from the pairwise term, which has no parameters: the check must say so
    assert _value(table, "energy", "spatial") > 0.9
    assert "the energy map does not depend on what the spatial module learned" in randomization_warning(table, "energy")
    assert "spatial.bias" in " ".join(table.attrs["notes"])  # the scalar bias has no reset_parameters()


def test_callers_model_and_random_state_are_untouched(ersm):
    before = {k: v.clone() for k, v in ersm.state_dict().items()}
    ersm.train()
    rng = torch.get_rng_state()
    map_randomization(ersm, _loader(4), maps=("keep", "cam"), n_boot=20)
    assert ersm.training  # mode restored
    ersm.eval()
    assert all(torch.equal(before[k], v) for k, v in ersm.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_deterministic_for_a_seed(ersm):
    a = map_randomization(ersm, _loader(), maps=("cam",), seed=3, n_boot=30)
    b = map_randomization(ersm, _loader(batch=1), maps=("cam",), seed=3, n_boot=30)  # any batch size
    pd.testing.assert_frame_equal(a, b)
    c = map_randomization(ersm, _loader(), maps=("cam",), seed=4, n_boot=30)
    assert not np.allclose(a["spearman"], c["spearman"])


def test_randomized_copy_resets_only_the_named_modules(ersm):
    twin, untouched = randomized_copy(ersm, ["head"], seed=0)
    assert not torch.equal(twin.head.weight, ersm.head.weight)
    assert torch.equal(twin.spatial.template.weight, ersm.spatial.template.weight)
    assert untouched == []
    again, _ = randomized_copy(ersm, ["head"], seed=0)
    assert torch.equal(again.head.weight, twin.head.weight)
    _, untouched = randomized_copy(ersm, ["spatial"], seed=0)
    assert untouched == ["spatial.bias"]
    plan, notes = randomization_plan(ersm)
    assert plan == {"head": ["head"], "spatial": ["spatial"], "backbone_last": ["backbone.body.9"]}  # the last conv
    assert notes == {}


def test_plain_model_skips_absent_maps_and_steps_with_notes():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    model = wrap(net, layer="layer4")
    model.forward_features(torch.zeros(2, 3, 96, 96))  # fixes the grid (3×3)

    def channel_sum(m, x, y):  # an external map read from the backbone's map
        return m.forward_features(x).abs().sum(1)

    out = map_randomization(model, _loader(4, size=96), n_boot=20, scores={"channels": channel_sum})
    assert set(out["map"]) == {"cam", "channels"}
    assert list(dict.fromkeys(out["randomized"])) == ["head", "backbone_last"]
    notes = " ".join(out.attrs["notes"])
    assert "keep: skipped" in notes and "energy: skipped" in notes and "spatial: skipped" in notes
    assert _value(out, "channels", "head") == pytest.approx(1.0, abs=1e-12)  # the head does not touch the map
    assert _value(out, "cam", "head") < 0.9
    assert own_step("channels", out) == "backbone_last"
    assert torch.equal(net.fc.weight, model.head.weight)  # the caller's model is untouched
    plan, _ = randomization_plan(model)
    assert plan == {"head": ["head"], "backbone_last": ["_layer"]}


def test_bad_input():
    model = build_model(ModelConfig(num_classes=3, image_size=32, variant="baseline"))
    with pytest.raises(ValueError, match="unknown map"):
        map_randomization(model, _loader(2, 32), maps=("grad",))
    with pytest.raises(ValueError, match="steps must be distinct"):
        map_randomization(model, _loader(2, 32), steps=("head", "head"))
    with pytest.raises(ValueError, match="no images"):
        map_randomization(model, [], maps=("cam",))
    with pytest.raises(ValueError, match="wrap this Sequential first"):
        map_randomization(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()), _loader(2, 32))
    with pytest.raises(ValueError, match="none of the maps"):
        map_randomization(model, _loader(2, 32), maps=("keep", "energy"))
    out = map_randomization(model, _loader(2, 32), n_boot=10)  # baseline: no keep/energy, no spatial parameters
    assert set(out["map"]) == {"cam"} and "spatial: skipped" in " ".join(out.attrs["notes"])


# -- the rule on hand-made tables -------------------------------------------------------------


def _hand_table(rows):
    return pd.DataFrame([{"checkpoint": "m", "map": m, "randomized": s, "n_images": 10, "spearman": v,
                          "ci_low": v - 0.1, "ci_high": v + 0.1} for m, s, v in rows], columns=RANDOMIZATION_COLUMNS)


@pytest.mark.parametrize("value, verdict", [(0.7, "does_not_depend"), (0.5, "does_not_depend"), (0.49, "depends"),
                                            (-0.9, "depends"), (float("nan"), "not_checked"), (None, "not_checked")])
def test_dependence_verdict(value, verdict):
    assert dependence_verdict(value) == verdict


def test_warning_comes_from_the_maps_own_step():
    table = _hand_table([("keep", "head", 1.0), ("keep", "spatial", 0.8), ("cam", "head", 0.2),
                         ("cam", "spatial", 0.1), ("grad", "head", 0.9), ("grad", "backbone_last", 0.6),
                         ("energy", "head", 1.0), ("energy", "spatial", float("nan"))])
    text = randomization_warning(table, "keep")
    assert text.startswith("m: Warning: the keep map does not depend on what the spatial module learned")
    assert "+0.80, 95% CI +0.70 to +0.90, at least 0.5" in text
    assert randomization_warning(table, "cam") is None  # CAM's own module is the head: 0.2
    assert "backbone's last stage" in randomization_warning(table, "grad")  # external: the last step checked
    assert randomization_warning(table, "energy") is None  # cannot tell: no number
    assert randomization_warning(table.iloc[:1], "keep") is None  # its own step was not checked
    assert own_step("keep") == "spatial" and own_step("cam") == "head" and own_step("grad") is None
