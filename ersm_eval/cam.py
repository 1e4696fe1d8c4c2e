"""The class activation map (Zhou et al., 2016, "Learning Deep Features for Discriminative
Localization"): each token's contribution to one class's logit. The one CAM of the
project, used by deletion's ``cam`` ranking and by the maps of :mod:`ersm_eval.maps`.

The head pools a map [B, C, H, W] by its mean, so the pooled vector is the sum of
the tokens' shares z_i = (sum of the map over token i's P×P positions) / (H·W).
With a linear head (logits = W·pooled + b) token i contributes W[c]·z_i to the
logit of class c exactly, and the CAM sums to the logit minus the bias. With a
non-linear step before the classifier (ConvNeXt's norm) the contribution is
gradient × input, ∇_pooled logit_c · z_i, a first-order approximation.

The token sums are taken in float64 (float32 on MPS, which has no float64), and
with a linear head the classifier's weights are applied to them first
(:func:`token_values`), which is also what deletion's fast path sums.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["token_sums", "token_values", "cam_scores"]


def _wide(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def token_sums(feature_map: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Per-token channel sums over each token's P×P positions, [B, C, H, W] → [B, N, C] (float64)."""
    batch, channels, height, width = feature_map.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = feature_map.to(_wide(feature_map.device))
    if patch_size > 1:
        x = x.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size).sum((3, 5))
    return x.reshape(batch, channels, grid_h * grid_w).transpose(1, 2)


def token_values(model: Any, feature_map: torch.Tensor) -> torch.Tensor:
    """Per-token vectors [B, N, D] in float64 whose sum over tokens gives the logits.

    With a linear head (logits = W·pooled + b): each token's logit contributions
    W·(token sum), D = K. Otherwise the token sums themselves, D = C.
    """
    sums = token_sums(feature_map, model.config.patch_size)
    if model.head_is_linear:
        return sums @ model.head.weight.to(sums.dtype).T
    return sums


def cam_scores(
    model: Any,
    feature_map: torch.Tensor,
    target: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's contribution [B, N] to the logit of class ``target`` on the map the head pools.

    Args:
        model: an ERSM model or a :class:`~ersm_eval.adapter.ModelAdapter` (``head_is_linear``,
            ``head``, ``forward_head``, ``config.patch_size``).
        feature_map: the map the head pools, [B, C, H, W].
        target: class per image [B]; None: the prediction on this map.
        values: :func:`token_values` of the map, when the caller has them already.

    Returns:
        (cam [B, N] float32, the class used per image [B] long).
    """
    batch, _, height, width = feature_map.shape
    if values is None:
        values = token_values(model, feature_map)
    positions = float(height * width)
    if model.head_is_linear:
        if target is None:
            logits = values.sum(1) / positions  # [B, K], wide
            if model.head.bias is not None:
                logits = logits + model.head.bias.to(values.dtype)
            target = logits.argmax(1)
        target = target.to(values.device).long()
        cam = values.gather(2, target[:, None, None].expand(batch, values.shape[1], 1))[:, :, 0] / positions
        return cam.float(), target
    shares = values / positions  # token sums → shares of the pooled vector
    pooled = shares.sum(1).to(feature_map.dtype)
    with torch.enable_grad():
        leaf = pooled.detach().clone().requires_grad_(True)
        logits = model.forward_head(leaf)
        target = logits.argmax(1) if target is None else target.to(logits.device).long()
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), leaf)
    cam = torch.einsum("bnc,bc->bn", shares, grad.detach().to(shares.dtype))
    return cam.float(), target.detach()
