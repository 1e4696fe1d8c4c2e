"""The Energy-Mask Layer of Energy-Regularized Spatial Masking (ERSM).

Implements SPEC §1: tokenization of a feature map into non-overlapping P×P
patches, L2 normalization, the unary and pairwise potentials and energies, the
amortized unary gate and the expected-energy loss. The pure functions operate
on tensors and are what the tests check against hand computations;
:class:`EnergyMask` holds the learned parameters and calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ersm_core.errors import ConfigError

__all__ = [
    "valid_patch_sizes",
    "check_patch_size",
    "tokenize",
    "untokenize_scale",
    "normalize_tokens",
    "unary_potential",
    "pairwise_potential",
    "energies",
    "keep_probability",
    "energy_loss",
    "TokenScores",
    "EnergyMask",
]

_EPS = 1e-6


def valid_patch_sizes(height: int, width: int) -> list[int]:
    """Patch sizes that divide both sides of an H×W map."""
    return [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]


def check_patch_size(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Return the token grid (h, w), or raise a ConfigError naming the sizes that work."""
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ConfigError(
            f"patch size {patch_size} does not divide the {height}x{width} feature map; "
            f"patch sizes that would work: {valid_patch_sizes(height, width)}"
        )
    return height // patch_size, width // patch_size


def tokenize(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Split [B, C, H, W] into tokens [B, N, D], D = C·P², N row-major over the grid."""
    batch, channels, height, width = x.shape
    grid_h, grid_w = check_patch_size(height, width, patch_size)
    # the layout of F.unfold(x, P, stride=P).transpose(1, 2) (D ordered as c, row, col in the
    # patch), by reshaping: im2col is far slower on the CPU, pathologically so with threads
    patches = x.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, grid_h * grid_w, channels * patch_size * patch_size)


def untokenize_scale(x: torch.Tensor, per_token: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Multiply each token's P×P positions of x [B, C, H, W] by per_token [B, N]."""
    batch, _, height, width = x.shape
    grid_h, grid_w = check_patch_size(height, width, patch_size)
    scale = per_token.reshape(batch, 1, grid_h, grid_w)
    if patch_size > 1:
        scale = scale.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return x * scale


def normalize_tokens(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (t̂ = t / max(‖t‖₂, 1e-6), ‖t‖₂) for tokens [B, N, D]."""
    magnitude = tokens.norm(dim=-1)
    return tokens / magnitude.clamp_min(_EPS).unsqueeze(-1), magnitude


def unary_potential(tokens_hat: torch.Tensor, template: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """u_i = ⟨t̂_i, w⟩ + b for t̂ [B, N, D], w [D]; b a scalar or per-token [N]."""
    return tokens_hat @ template + bias


def pairwise_potential(tokens_hat: torch.Tensor, grid: tuple[int, int], reduce: str = "sum") -> torch.Tensor:
    """p_i = Σ over the Moore neighbours j of i of ⟨t̂_i, t̂_j⟩; outside the grid counts 0.

    Since the cosine is linear in t̂_j, p_i = ⟨t̂_i, Σ_j t̂_j⟩: one 3×3 box sum of the
    normalized grid minus the centre gives every neighbour sum at once.

    Args:
        tokens_hat: normalized tokens [B, N, D].
        grid: token grid (h, w) with N = h·w.
        reduce: ``"sum"`` (authors' code) or ``"mean"`` over the neighbours that exist.
    """
    if reduce not in ("sum", "mean"):
        raise ConfigError(f"pairwise_reduce must be 'sum' or 'mean', got {reduce!r}")
    batch, n_tokens, dim = tokens_hat.shape
    grid_h, grid_w = grid
    image = tokens_hat.transpose(1, 2).reshape(batch, dim, grid_h, grid_w)
    box = F.avg_pool2d(image, kernel_size=3, stride=1, padding=1, count_include_pad=True) * 9.0
    neighbours = (box - image).reshape(batch, dim, n_tokens).transpose(1, 2)
    potential = (tokens_hat * neighbours).sum(-1)
    if reduce == "mean":
        ones = torch.ones(1, 1, grid_h, grid_w, dtype=tokens_hat.dtype, device=tokens_hat.device)
        count = F.avg_pool2d(ones, kernel_size=3, stride=1, padding=1, count_include_pad=True) * 9.0 - 1.0
        potential = potential / count.reshape(1, n_tokens).clamp_min(1.0)
    return potential


def energies(
    unary: torch.Tensor, pairwise: torch.Tensor, alpha: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (E^u = α·softplus(u), E^p = β·softplus(p), E = E^u + E^p)."""
    energy_unary = alpha * F.softplus(unary)
    energy_pairwise = beta * F.softplus(pairwise)
    return energy_unary, energy_pairwise, energy_unary + energy_pairwise


def keep_probability(unary: torch.Tensor, tau: float) -> torch.Tensor:
    """π_i = sigmoid(−u_i / τ): the amortized gate uses the unary term only."""
    return torch.sigmoid(-unary / tau)


def energy_loss(keep: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """L_E = mean over batch and tokens of π_i · E_i."""
    return (keep * energy).mean()


@dataclass
class TokenScores:
    """Per-token quantities of one batch, all [B, N], on the grid (h, w)."""

    unary: torch.Tensor
    keep: torch.Tensor
    energy_unary: torch.Tensor
    energy_pairwise: torch.Tensor
    energy: torch.Tensor
    magnitude: torch.Tensor
    grid: tuple[int, int]


class EnergyMask(nn.Module):
    """The Energy-Mask Layer: scores every token and softly gates it (SPEC §1).

    Args:
        channels: C of the incoming feature map.
        patch_size: P; tokens are P×P patches, D = C·P².
        alpha: weight of the unary energy.
        beta: weight of the pairwise energy (0 gives ERSM-Unary).
        tau: gate temperature.
        init_keep: initial keep probability; sets b = −τ·logit(init_keep).
        pairwise_reduce: ``"sum"`` or ``"mean"`` over the Moore neighbours.
        bias: ``"scalar"`` (one b) or ``"per_token"`` (one b per token, needs n_tokens).
        n_tokens: N, required for ``bias="per_token"``.
    """

    def __init__(
        self,
        channels: int,
        patch_size: int = 1,
        alpha: float = 1e-3,
        beta: float = 1e-3,
        tau: float = 1.0,
        init_keep: float = 0.9,
        pairwise_reduce: str = "sum",
        bias: str = "scalar",
        n_tokens: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < init_keep < 1.0:
            raise ConfigError(f"init_keep must lie strictly between 0 and 1, got {init_keep}")
        if tau <= 0:
            raise ConfigError(f"tau must be positive, got {tau}")
        if pairwise_reduce not in ("sum", "mean"):
            raise ConfigError(f"pairwise_reduce must be 'sum' or 'mean', got {pairwise_reduce!r}")
        if bias not in ("scalar", "per_token"):
            raise ConfigError(f"bias must be 'scalar' or 'per_token', got {bias!r}")
        if bias == "per_token" and not n_tokens:
            raise ConfigError("bias='per_token' needs the number of tokens (n_tokens)")
        self.channels = channels
        self.patch_size = patch_size
        self.alpha = alpha
        self.beta = beta
        self.tau = tau
        self.pairwise_reduce = pairwise_reduce
        dim = channels * patch_size * patch_size
        self.template = nn.Linear(dim, 1, bias=False)
        init_bias = -tau * math.log(init_keep / (1.0 - init_keep))
        shape = (n_tokens,) if bias == "per_token" else ()
        self.bias = nn.Parameter(torch.full(shape, init_bias))

    def scores(self, x: torch.Tensor) -> TokenScores:
        """All per-token quantities for a feature map x [B, C, H, W]."""
        _, _, height, width = x.shape
        grid = check_patch_size(height, width, self.patch_size)
        tokens_hat, magnitude = normalize_tokens(tokenize(x, self.patch_size))
        if self.bias.ndim == 1 and self.bias.numel() != tokens_hat.shape[1]:
            raise ConfigError(
                f"per-token bias was built for {self.bias.numel()} tokens but the map has "
                f"{tokens_hat.shape[1]} ({grid[0]}x{grid[1]}); use the image size the model was trained with"
            )
        unary = unary_potential(tokens_hat, self.template.weight[0], self.bias)
        if self.beta != 0.0:
            pairwise = pairwise_potential(tokens_hat, grid, self.pairwise_reduce)
        else:
            pairwise = torch.zeros_like(unary)
        energy_unary, energy_pairwise, energy = energies(unary, pairwise, self.alpha, self.beta)
        return TokenScores(
            unary=unary,
            keep=keep_probability(unary, self.tau),
            energy_unary=energy_unary,
            energy_pairwise=energy_pairwise,
            energy=energy,
            magnitude=magnitude,
            grid=grid,
        )

    def gate(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Y = X ⊙ π, each token's P×P positions scaled by its keep probability."""
        return untokenize_scale(x, keep, self.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the gated map and ``{"reg_loss": L_E, "keep": π}``."""
        scores = self.scores(x)
        return self.gate(x, scores.keep), {
            "reg_loss": energy_loss(scores.keep, scores.energy),
            "keep": scores.keep,
        }
