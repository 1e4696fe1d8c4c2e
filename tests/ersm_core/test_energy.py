"""The Energy-Mask Layer against hand computations (SPEC §1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ersm_core.energy import (
    EnergyMask,
    check_patch_size,
    energies,
    energy_loss,
    keep_probability,
    normalize_tokens,
    pairwise_potential,
    tokenize,
    unary_potential,
    untokenize_scale,
    valid_patch_sizes,
)
from ersm_core.errors import ConfigError


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def _pairwise_loop(tokens_hat: torch.Tensor, grid: tuple[int, int], reduce: str) -> torch.Tensor:
    """The slow obvious path: for every token, loop over its Moore neighbours on the grid."""
    batch, n_tokens, _ = tokens_hat.shape
    grid_h, grid_w = grid
    out = torch.zeros(batch, n_tokens, dtype=tokens_hat.dtype)
    for b in range(batch):
        for r in range(grid_h):
            for c in range(grid_w):
                total, count = 0.0, 0
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if (dr, dc) == (0, 0) or not (0 <= rr < grid_h and 0 <= cc < grid_w):
                            continue
                        total += float(tokens_hat[b, r * grid_w + c] @ tokens_hat[b, rr * grid_w + cc])
                        count += 1
                out[b, r * grid_w + c] = total / count if reduce == "mean" and count else total
    return out


# -- 1. tokenize ------------------------------------------------------------------------
def test_tokenize_p1_is_row_major_channel_vectors():
    x = torch.arange(2 * 2 * 4, dtype=torch.float32).reshape(1, 2, 2, 4)  # C=2, H=2, W=4
    tokens = tokenize(x, 1)
    assert tokens.shape == (1, 8, 2)
    for r in range(2):
        for c in range(4):
            assert tokens[0, r * 4 + c].tolist() == [x[0, 0, r, c].item(), x[0, 1, r, c].item()]


def test_tokenize_p2_layout_matches_unfold():
    x = torch.arange(2 * 2 * 4, dtype=torch.float32).reshape(1, 2, 2, 4)  # grid 1×2, D = 2·2² = 8
    tokens = tokenize(x, 2)
    assert tokens.shape == (1, 2, 8)
    # D is ordered (channel, row in patch, column in patch), as F.unfold lays it out
    expected_first = x[0, 0, 0:2, 0:2].flatten().tolist() + x[0, 1, 0:2, 0:2].flatten().tolist()
    expected_second = x[0, 0, 0:2, 2:4].flatten().tolist() + x[0, 1, 0:2, 2:4].flatten().tolist()
    assert tokens[0, 0].tolist() == expected_first
    assert tokens[0, 1].tolist() == expected_second
    rnd = torch.randn(3, 5, 6, 9)
    for p in (1, 3):
        assert torch.equal(tokenize(rnd, p), F.unfold(rnd, kernel_size=p, stride=p).transpose(1, 2))


def test_patch_size_that_does_not_divide_names_sizes_that_work():
    with pytest.raises(ConfigError, match=r"patch size 3 does not divide the 8x4 feature map.*\[1, 2, 4\]"):
        tokenize(torch.zeros(1, 2, 8, 4), 3)
    with pytest.raises(ConfigError, match="6x6"):
        EnergyMask(2, patch_size=4).scores(torch.zeros(1, 2, 6, 6))
    assert valid_patch_sizes(6, 9) == [1, 3]
    assert check_patch_size(6, 9, 3) == (2, 3)


# -- 2. normalize -----------------------------------------------------------------------
def test_normalize_with_floor_on_a_zero_token():
    tokens = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [1e-8, 0.0]]])
    tokens_hat, magnitude = normalize_tokens(tokens)
    assert torch.allclose(magnitude, torch.tensor([[5.0, 0.0, 1e-8]]))
    assert torch.allclose(tokens_hat[0, 0], torch.tensor([0.6, 0.8]))
    assert tokens_hat[0, 1].tolist() == [0.0, 0.0]  # no NaN: divided by the 1e-6 floor
    assert torch.allclose(tokens_hat[0, 2], torch.tensor([1e-8 / 1e-6, 0.0]))


# -- 3. unary ---------------------------------------------------------------------------
def test_unary_potential_with_known_w_and_b():
    tokens_hat = torch.tensor([[[0.6, 0.8], [1.0, 0.0]]])
    u = unary_potential(tokens_hat, torch.tensor([1.0, -2.0]), torch.tensor(0.5))
    assert torch.allclose(u, torch.tensor([[0.6 - 1.6 + 0.5, 1.0 + 0.5]]))
    per_token = unary_potential(tokens_hat, torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(per_token, torch.tensor([[0.6 - 1.6, 1.0 + 1.0]]))


# -- 4. pairwise ------------------------------------------------------------------------
def test_pairwise_by_hand_on_a_1x3_grid():
    a, b, c = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8]), torch.tensor([0.0, 1.0])
    tokens_hat = torch.stack([a, b, c])[None]
    p_sum = pairwise_potential(tokens_hat, (1, 3), "sum")
    assert torch.allclose(p_sum, torch.tensor([[0.6, 0.6 + 0.8, 0.8]]))
    p_mean = pairwise_potential(tokens_hat, (1, 3), "mean")
    assert torch.allclose(p_mean, torch.tensor([[0.6, (0.6 + 0.8) / 2, 0.8]]))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("grid", [(3, 3), (2, 4), (1, 1), (4, 1)])
def test_pairwise_matches_an_explicit_double_loop(reduce, grid):
    torch.manual_seed(0)
    tokens_hat, _ = normalize_tokens(torch.randn(2, grid[0] * grid[1], 3, dtype=torch.float64))
    fast = pairwise_potential(tokens_hat, grid, reduce)
    assert torch.allclose(fast, _pairwise_loop(tokens_hat, grid, reduce), atol=1e-10)


def test_pairwise_corner_and_edge_neighbour_counts():
    # identical unit tokens: every cosine is 1, so the sum counts the neighbours that exist
    tokens_hat = torch.zeros(1, 9, 2)
    tokens_hat[..., 0] = 1.0
    counts = pairwise_potential(tokens_hat, (3, 3), "sum").reshape(3, 3)
    assert counts.tolist() == [[3, 5, 3], [5, 8, 5], [3, 5, 3]]
    assert pairwise_potential(tokens_hat, (3, 3), "mean").allclose(torch.ones(1, 9))


def test_pairwise_rejects_an_unknown_reduction():
    with pytest.raises(ConfigError, match="'sum' or 'mean'"):
        pairwise_potential(torch.zeros(1, 4, 2), (2, 2), "max")


# -- 5. energies, 6. gate, 7. loss --------------------------------------------------------
def test_energies_are_weighted_softplus():
    u, p = torch.tensor([[-0.5, 2.0]]), torch.tensor([[1.0, -3.0]])
    e_u, e_p, e = energies(u, p, alpha=0.1, beta=0.01)
    assert torch.allclose(e_u, torch.tensor([[0.1 * _softplus(-0.5), 0.1 * _softplus(2.0)]]))
    assert torch.allclose(e_p, torch.tensor([[0.01 * _softplus(1.0), 0.01 * _softplus(-3.0)]]))
    assert torch.allclose(e, e_u + e_p)


def test_keep_probability_is_sigmoid_of_minus_u_over_tau():
    u = torch.tensor([[-0.5, 0.0, 3.0]])
    keep = keep_probability(u, tau=2.0)
    assert torch.allclose(keep, torch.tensor([[1 / (1 + math.exp(-0.25)), 0.5, 1 / (1 + math.exp(1.5))]]))


def test_gate_scales_each_patch_by_its_keep():
    x = torch.ones(1, 2, 4, 4)
    keep = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # grid 2×2 of 2×2 patches
    y = EnergyMask(2, patch_size=2).gate(x, keep)
    expected = torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]])
    assert torch.allclose(y[0, 0], expected) and torch.allclose(y[0, 1], expected)
    assert torch.allclose(untokenize_scale(x, keep, 2), y)


def test_energy_loss_is_mean_of_keep_times_energy():
    assert energy_loss(torch.tensor([[0.5, 1.0]]), torch.tensor([[2.0, 4.0]])).item() == pytest.approx(2.5)


def test_layer_composes_the_formulas():
    torch.manual_seed(0)
    layer = EnergyMask(2, patch_size=1, alpha=0.3, beta=0.2, tau=0.5)
    with torch.no_grad():
        layer.template.weight.copy_(torch.tensor([[1.5, -0.5]]))
        layer.bias.fill_(0.25)
    x = torch.randn(1, 2, 2, 3)
    with torch.no_grad():
        s = layer.scores(x)
        y, aux = layer(x)
    for i in range(6):
        r, c = divmod(i, 3)
        t = x[0, :, r, c]
        t_hat = t / max(float(t.norm()), 1e-6)
        u = float(t_hat @ torch.tensor([1.5, -0.5])) + 0.25
        p = 0.0
        for rr in range(max(r - 1, 0), min(r + 2, 2)):
            for cc in range(max(c - 1, 0), min(c + 2, 3)):
                if (rr, cc) != (r, c):
                    other = x[0, :, rr, cc]
                    p += float(t_hat @ (other / max(float(other.norm()), 1e-6)))
        keep = 1 / (1 + math.exp(u / 0.5))
        assert s.unary[0, i].item() == pytest.approx(u, abs=1e-5)
        assert s.energy_pairwise[0, i].item() == pytest.approx(0.2 * _softplus(p), abs=1e-5)
        assert s.energy[0, i].item() == pytest.approx(0.3 * _softplus(u) + 0.2 * _softplus(p), abs=1e-5)
        assert s.keep[0, i].item() == pytest.approx(keep, abs=1e-6)
        assert s.magnitude[0, i].item() == pytest.approx(float(t.norm()), abs=1e-5)
        assert torch.allclose(y[0, :, r, c], t * keep, atol=1e-6)
    assert aux["reg_loss"].item() == pytest.approx(float((s.keep * s.energy).mean()), abs=1e-7)
    assert s.grid == (2, 3)


def test_beta_zero_has_no_pairwise_energy():
    s = EnergyMask(3, beta=0.0).scores(torch.randn(2, 3, 4, 4))
    assert torch.count_nonzero(s.energy_pairwise) == 0
    assert torch.allclose(s.energy, s.energy_unary)


# -- initialization, parameters, gradients --------------------------------------------------
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_init_keep_gives_the_initial_keep_when_w_is_zero(tau):
    layer = EnergyMask(4, tau=tau, init_keep=0.9)
    assert layer.bias.item() == pytest.approx(-tau * math.log(0.9 / 0.1))
    with torch.no_grad():
        layer.template.weight.zero_()
    keep = layer.scores(torch.randn(2, 4, 3, 3)).keep
    assert torch.allclose(keep, torch.full_like(keep, 0.9), atol=1e-6)


def test_per_token_bias_is_one_learned_value_per_token():
    layer = EnergyMask(2, bias="per_token", n_tokens=4)
    assert layer.bias.shape == (4,)
    with torch.no_grad():
        layer.template.weight.zero_()
        layer.bias.copy_(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    s = layer.scores(torch.randn(3, 2, 2, 2))
    assert torch.allclose(s.unary, torch.tensor([-1.0, 0.0, 1.0, 2.0]).expand(3, 4))
    with pytest.raises(ConfigError, match="built for 4 tokens but the map has 9"):
        layer.scores(torch.randn(1, 2, 3, 3))
    with pytest.raises(ConfigError, match="n_tokens"):
        EnergyMask(2, bias="per_token")


@pytest.mark.parametrize("bias", ["scalar", "per_token"])
def test_gradients_reach_template_and_bias(bias):
    layer = EnergyMask(3, alpha=1.0, beta=1.0, bias=bias, n_tokens=16)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"template.weight", "bias"}
    assert any(p is layer.bias for p in layer.parameters())
    x = torch.randn(2, 3, 4, 4)
    y, aux = layer(x)
    (y.sum() + aux["reg_loss"]).backward()
    assert layer.template.weight.grad is not None and layer.template.weight.grad.abs().sum() > 0
    assert layer.bias.grad is not None and layer.bias.grad.abs().sum() > 0


def test_invalid_layer_options_raise_config_errors():
    with pytest.raises(ConfigError, match="init_keep"):
        EnergyMask(2, init_keep=1.0)
    with pytest.raises(ConfigError, match="tau"):
        EnergyMask(2, tau=0.0)
    with pytest.raises(ConfigError, match="bias"):
        EnergyMask(2, bias="vector")
