"""Token maps a model exposes, in one place: keep π, energy E and the class activation map.

All maps live on the token grid (h, w) of the insertion point, row-major, as the
Energy-Mask Layer's tokens do. The CAM of an image is each token's contribution
to the predicted class's logit (Zhou et al., 2016, "Learning Deep Features for
Discriminative Localization"), computed by :func:`ersm_eval.cam.cam_scores` on the
map the head actually pools (the gated map Y for ERSM/L0, the backbone map for
the rest): with g = ∂logit/∂pooled, CAM_i = g · (sum of Y over token i's
positions) / (H·W), so the CAM sums to the logit minus the bias. For a linear
head g is the classifier row and the CAM is exact; for a head with a non-linear
pre-logits step (ConvNeXt's norm) g comes from autograd and the map is gradient
× input, an approximation.

For localization every map is turned into a non-negative *saliency* where larger
means "object": keep as is (π ∈ [0, 1]), CAM clipped at 0 (as Grad-CAM), and
energy as max(E) − E per image, since high energy marks what ERSM deletes first.

Two *baseline* maps know nothing about the image and say how much a localization
score owes to the object's size and position alone: ``uniform`` (every token the
same, 1) and ``center`` (token value exp(−d²/2σ²), d the distance in tokens from
the token's centre to the grid's centre, σ = min(h, w)/4).

:func:`model_maps` runs the model in fixed-size chunks
(:func:`ersm_eval.forward.fixed_chunks`), so every map is bitwise the same for
every batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ersm_eval.cam import cam_scores
from ersm_eval.forward import FORWARD_CHUNK, fixed_chunks

__all__ = [
    "MAP_NAMES",
    "BASELINE_MAPS",
    "model_maps",
    "saliency",
    "upsample",
    "token_center_distance",
    "baseline_tokens",
    "baseline_saliency",
]

MAP_NAMES = ("keep", "energy", "cam")
BASELINE_MAPS = ("uniform", "center")  # maps that ignore the image: the references of every localization score


def model_maps(model: Any, images: torch.Tensor, chunk: int = FORWARD_CHUNK) -> dict[str, Any]:
    """One forward pass giving the logits and every map the model has, each [B, h, w].

    The images go through the model in chunks of exactly ``chunk`` (the last one
    padded), so the numbers do not depend on how many images are passed at once.

    Returns a dict with ``logits`` [B, K], ``grid`` (h, w), ``cam`` and, where the
    model has them, ``keep`` (ERSM, L0) and ``energy`` (ERSM).
    """
    return fixed_chunks(lambda x: _model_maps(model, x), images, chunk)


def _model_maps(model: Any, images: torch.Tensor) -> dict[str, Any]:
    features = model.forward_features(images)
    scores = model.token_scores(features)
    gated = model.gate(features)
    logits = model.forward_head(model.pool(gated))
    grid_h, grid_w = scores["grid"]
    batch = images.shape[0]
    out: dict[str, Any] = {"logits": logits, "grid": (grid_h, grid_w)}
    if "keep" in scores:
        out["keep"] = scores["keep"].reshape(batch, grid_h, grid_w)
    if "energy" in scores:
        out["energy"] = scores["energy"].reshape(batch, grid_h, grid_w)
    out["cam"] = cam_scores(model, gated, logits.argmax(1))[0].reshape(batch, grid_h, grid_w)
    return out


def saliency(name: str, values: torch.Tensor) -> torch.Tensor:
    """Non-negative map [B, h, w] where larger means "object" (see the module docstring)."""
    if name == "keep":
        return values.clamp_min(0.0)
    if name == "cam":
        return values.clamp_min(0.0)
    if name == "energy":
        return values.flatten(1).amax(1)[:, None, None] - values
    raise ValueError(f"unknown map {name!r}; valid names: {', '.join(MAP_NAMES)}")


def upsample(values: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of token maps [B, h, w] to [B, S, S]."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(values[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def token_center_distance(height: int, width: int) -> np.ndarray:
    """Euclidean distance [h, w], in tokens, from each token's centre to the grid's centre.

    Token (r, c) has its centre at (r + ½, c + ½) and the grid's centre is
    (h/2, w/2), so the distance is √((r − (h−1)/2)² + (c − (w−1)/2)²).
    """
    rows = np.arange(height, dtype=np.float64) - (height - 1) / 2.0
    cols = np.arange(width, dtype=np.float64) - (width - 1) / 2.0
    return np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


def baseline_tokens(name: str, height: int, width: int) -> np.ndarray:
    """A baseline map [h, w] on the token grid (float64).

    ``uniform``: 1 everywhere. ``center``: exp(−d²/2σ²) with d from
    :func:`token_center_distance` and σ = min(h, w)/4.
    """
    if name == "uniform":
        return np.ones((height, width))
    if name == "center":
        sigma = min(height, width) / 4.0
        return np.exp(-token_center_distance(height, width) ** 2 / (2.0 * sigma * sigma))
    raise ValueError(f"unknown baseline map {name!r}; valid names: {', '.join(BASELINE_MAPS)}")


def baseline_saliency(name: str, grid: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """A baseline map upsampled to the image [S, S] (float64), the same for every image.

    ``center`` goes through :func:`upsample` like the model's maps. ``uniform`` is 1
    at every pixel: bilinear upsampling of a constant is that constant, and
    building it exactly keeps its scores exact (its mass on the object *is* the
    object's area fraction).
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if name == "uniform":
        return np.ones(size)
    tokens = torch.from_numpy(baseline_tokens(name, *grid)).float()[None]
    return upsample(tokens, size)[0].numpy().astype(np.float64)
