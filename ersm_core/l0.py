"""Per-token hard-concrete gates with an expected-L0 penalty (Louizos et al., 2018).

"Learning Sparse Neural Networks through L0 Regularization": a stretched,
clipped binary-concrete gate z ∈ [0, 1] per token, sampled in training and set to
its deterministic estimate in eval mode. The gate's log α is an input-dependent
linear read-out of the normalized token, so the keep map adapts to each image
like the ERSM gate does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ersm_core.energy import check_patch_size, normalize_tokens, tokenize, untokenize_scale
from ersm_core.errors import ConfigError

__all__ = ["hard_concrete_sample", "hard_concrete_mean", "expected_l0", "L0Gate"]

GAMMA, ZETA, BETA = -0.1, 1.1, 2.0 / 3.0


def hard_concrete_sample(log_alpha: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """One reparameterized sample z = clamp(sigmoid((log u − log(1−u) + log α)/β)(ζ−γ)+γ, 0, 1)."""
    u = torch.rand_like(log_alpha).clamp(1e-6, 1.0 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def hard_concrete_mean(log_alpha: torch.Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """Deterministic test-time gate: clamp(sigmoid(log α)(ζ−γ)+γ, 0, 1)."""
    return (torch.sigmoid(log_alpha) * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def expected_l0(log_alpha: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """P(z ≠ 0) = sigmoid(log α − β·log(−γ/ζ)) per gate."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


class L0Gate(nn.Module):
    """Token-wise hard-concrete gate; its loss term is λ · mean expected L0.

    Args:
        channels: C of the incoming map.
        patch_size: P, as for the Energy-Mask Layer.
        l0_lambda: weight of the expected-L0 penalty.
        init_keep: initial deterministic keep value, sets the bias of log α.
    """

    def __init__(self, channels: int, patch_size: int = 1, l0_lambda: float = 1e-2, init_keep: float = 0.9) -> None:
        super().__init__()
        if not 0.0 < init_keep < 1.0:
            raise ConfigError(f"init_keep must lie strictly between 0 and 1, got {init_keep}")
        self.patch_size = patch_size
        self.l0_lambda = l0_lambda
        self.proj = nn.Linear(channels * patch_size * patch_size, 1, bias=True)
        # invert the deterministic gate for the wanted initial keep value
        target = (init_keep - GAMMA) / (ZETA - GAMMA)
        with torch.no_grad():
            self.proj.bias.fill_(math.log(target / (1.0 - target)))

    def log_alpha(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (log α [B, N], token magnitude [B, N]) for a map x [B, C, H, W]."""
        tokens_hat, magnitude = normalize_tokens(tokenize(x, self.patch_size))
        return self.proj(tokens_hat).squeeze(-1), magnitude

    def scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic keep values and magnitudes, [B, N] each."""
        log_alpha, magnitude = self.log_alpha(x)
        return {"keep": hard_concrete_mean(log_alpha), "magnitude": magnitude, "gate_logit": log_alpha}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_patch_size(x.shape[2], x.shape[3], self.patch_size)
        log_alpha, _ = self.log_alpha(x)
        gate = hard_concrete_sample(log_alpha) if self.training else hard_concrete_mean(log_alpha)
        loss = self.l0_lambda * expected_l0(log_alpha).mean()
        return untokenize_scale(x, gate, self.patch_size), {"reg_loss": loss, "keep": gate}
