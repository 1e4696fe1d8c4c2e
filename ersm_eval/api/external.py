"""External rankings: score maps given by the caller, turned into per-token scores and into
rankings of one evaluation (never registered globally)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ersm_core.errors import ConfigError
from ersm_eval.deletion.logits import token_pixel_map
from ersm_eval.rankings import ALIASES, RANKINGS, Ranking, score_ranking

__all__ = ["ScoreMaps", "RESERVED_KEYS", "check_external_name", "external_rankings", "tokens_from_maps",
           "external_batch"]

ScoreMaps = Any  # torch.Tensor | np.ndarray [n_images, h, w] or [n_images, H, W], or (model, x, y) -> [B, h|H, w|W]

RESERVED_KEYS = ("energy", "unary", "keep", "magnitude", "cam", "energy_unary", "energy_pairwise", "grid")


def check_external_name(name: Any) -> str:
    """``name`` when it can name an external ranking (a word, not a built-in ranking or score)."""
    if not isinstance(name, str) or not name.strip() or "," in name or name != name.strip():
        raise ConfigError(f"an external ranking name must be a non-empty word without commas, got {name!r}")
    if name in RANKINGS or name in RESERVED_KEYS or name in ALIASES:
        raise ConfigError(f"the external ranking name {name!r} is taken by a built-in ranking or score; choose another, "
                          f"e.g. {name}_external")
    return name


def external_rankings(names: Sequence[str]) -> dict[str, Ranking]:
    """One ranking per external score name whose importance is the score (highest value = most
    important; its score key is the name), evaluated in both orders: a mapping for one evaluator,
    so the registry of built-in rankings never changes."""
    return {name: score_ranking(name, name, False, f"external scores {name!r}: s = the map's value")
            for name in (check_external_name(n) for n in names)}


def tokens_from_maps(maps: torch.Tensor, grid: tuple[int, int], name: str = "scores") -> torch.Tensor:
    """Score maps [B, h, w] on the token grid, or [B, H, W] in pixels, as per-token scores [B, N].

    A pixel map gives each token the mean of the pixels under it: pixel (y, x) lies under
    token (⌊y·h/H⌋, ⌊x·w/W⌋), as :func:`ersm_eval.deletion.token_pixel_map` assigns them.
    """
    maps = torch.as_tensor(maps)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ConfigError(
            f"scores[{name!r}] must be maps [n_images, h, w] or [n_images, H, W], got shape {tuple(maps.shape)}"
            " (sum attributions over the colour channels first)"
        )
    maps = maps.double()
    if not bool(torch.isfinite(maps).all()):
        raise ConfigError(f"scores[{name!r}] holds NaN or infinite values")
    batch, height, width = maps.shape
    grid_h, grid_w = grid
    if (height, width) == (grid_h, grid_w):
        return maps.reshape(batch, -1)
    if height < grid_h or width < grid_w:
        raise ConfigError(f"scores[{name!r}] maps are {height}×{width}, smaller than the {grid_h}×{grid_w} token grid")
    pix = token_pixel_map((height, width), (grid_h, grid_w), maps.device).reshape(-1)
    sums = torch.zeros(batch, grid_h * grid_w, dtype=maps.dtype, device=maps.device)
    sums.index_add_(1, pix, maps.reshape(batch, -1))
    counts = torch.bincount(pix, minlength=grid_h * grid_w).to(maps.dtype)
    return sums / counts


def external_batch(scores: Mapping[str, ScoreMaps], model: nn.Module, batch: dict[str, Any], positions: np.ndarray,
                    grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per-token scores [B, N] of each external ranking for one batch (rows ``positions`` of the maps,
    or the callable's maps of the batch's images)."""
    out = {}
    for name, maps in scores.items():
        if callable(maps):
            value = maps(model, batch["image"], batch["label"])
            try:
                value = torch.as_tensor(value.detach() if torch.is_tensor(value) else np.asarray(value, dtype=np.float32))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"scores[{name!r}] returned {type(value).__name__}, not maps of numbers "
                                  f"[B, h, w] ({err})") from None
            if value.dim() != 3:
                raise ConfigError(f"scores[{name!r}] returned shape {tuple(value.shape)}; it must return maps [B, h, w]")
            if value.shape[0] != len(positions):
                raise ConfigError(f"scores[{name!r}] gave {value.shape[0]} maps for a batch of {len(positions)} images")
        else:
            if len(positions) and int(positions.max()) >= len(maps):
                raise ConfigError(f"scores[{name!r}] holds {len(maps)} maps but the loader gives more images; "
                                  "give one map per image, in loader order")
            rows = torch.as_tensor(positions, dtype=torch.long)
            value = maps[rows.to(maps.device)] if torch.is_tensor(maps) else torch.as_tensor(np.asarray(maps)[positions])
        out[name] = tokens_from_maps(value.detach().cpu(), grid, name).float()
    return out
