"""Token maps a model exposes, in one place: keep π, energy E and the class activation map.

All maps live on the token grid (h, w) of the insertion point, row-major, as the
Energy-Mask Layer's tokens do. The CAM of an image is each token's contribution
to the predicted class's logit (Zhou et al., 2016, "Learning Deep Features for
Discriminative Localization"), computed on the map the head actually pools (the
gated map Y for ERSM/L0, the backbone map for the rest): with g = ∂logit/∂pooled,
CAM_i = g · (sum of Y over token i's positions) / (H·W), so the CAM sums to the
logit minus the bias. For a linear head g is the classifier row and the CAM is
exact; for a head with a non-linear pre-logits step (ConvNeXt's norm) g comes
from autograd and the map is gradient × input, an approximation.

For localization every map is turned into a non-negative *saliency* where larger
means "object": keep as is (π ∈ [0, 1]), CAM clipped at 0 (as Grad-CAM), and
energy as max(E) − E per image, since high energy marks what ERSM deletes first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["MAP_NAMES", "model_maps", "cam_tokens", "saliency", "upsample"]

MAP_NAMES = ("keep", "energy", "cam")


def cam_tokens(model: Any, gated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-token contribution [B, N] to the logit of class ``target`` [B].

    Args:
        model: an :class:`~ersm_core.model.ERSMModel`.
        gated: the map the head pools, [B, C, H, W].
        target: class per image (the prediction, for the CAM).
    """
    batch, _, height, width = gated.shape
    pooled = model.pool(gated)
    if model.head_is_linear:
        grad = model.head.weight[target].to(gated.dtype)  # [B, C]
    else:
        with torch.enable_grad():
            leaf = pooled.detach().requires_grad_(True)
            logits = model.forward_head(leaf)
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), leaf)
    per_position = torch.einsum("bc,bchw->bhw", grad.detach(), gated) / float(height * width)
    patch = model.config.patch_size
    if patch > 1:
        per_position = F.avg_pool2d(per_position[:, None], patch, stride=patch)[:, 0] * float(patch * patch)
    return per_position.reshape(batch, -1)


def model_maps(model: Any, images: torch.Tensor) -> dict[str, Any]:
    """One forward pass giving the logits and every map the model has, each [B, h, w].

    Returns a dict with ``logits`` [B, K], ``grid`` (h, w), ``cam`` and, where the
    model has them, ``keep`` (ERSM, L0) and ``energy`` (ERSM).
    """
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
    out["cam"] = cam_tokens(model, gated, logits.argmax(1)).reshape(batch, grid_h, grid_w)
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
