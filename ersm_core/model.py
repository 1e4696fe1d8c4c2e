"""Model skeleton shared by every variant: backbone → spatial module → GAP → head.

Variants (SPEC §1): ``baseline`` (identity), ``dropblock`` (Ghiasi et al., 2018),
``spatial_dropout`` (Tompson et al., 2015), ``l0`` (Louizos et al., 2018),
``ersm_unary`` and ``ersm_full`` (the Energy-Mask Layer). Everything after the
insertion point is pool → head, which is what lets the deletion evaluator get
a whole curve from one backbone pass.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ersm_core.backbones import build_backbone, load_backbone_weights
from ersm_core.config import ENERGY_VARIANTS, MAX_IMAGE_SIZE, MIN_CROP_PCT, MIN_IMAGE_SIZE, ModelConfig
from ersm_core.energy import EnergyMask, check_patch_size, normalize_tokens, tokenize
from ersm_core.l0 import L0Gate
from ersm_core.registry import Registry

# ModelConfig and the image-size bounds live in ersm_core.config (no torch); re-exported here
__all__ = ["ModelConfig", "ERSMModel", "build_model", "seed_free_backbone", "FROZEN_BACKBONE_SEED", "feature_map_size", "VARIANTS", "ENERGY_VARIANTS", "MAX_IMAGE_SIZE",
           "MIN_IMAGE_SIZE", "MIN_CROP_PCT"]


class _ForwardFeatures(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_features(x)


def feature_map_size(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    """(H, W) of the backbone's map for an image_size² input, computed without allocating it.

    The probe runs on the meta device (shapes only, no memory), with the backbone's parameters and
    buffers swapped for meta copies, so a large ``image_size`` costs nothing here. A backbone whose
    forward cannot run on meta tensors is probed for real; ModelConfig bounds ``image_size`` (see
    ``MAX_IMAGE_SIZE``), which bounds that probe.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            try:
                wrapper = _ForwardFeatures(backbone)
                meta = {name: torch.empty_like(t, device="meta")
                        for name, t in [*wrapper.named_parameters(), *wrapper.named_buffers()]}
                x = torch.empty(1, 3, image_size, image_size, device="meta")
                probe = torch.func.functional_call(wrapper, meta, (x,))
            except Exception:  # noqa: BLE001 - an op without a meta kernel: probe for real (bounded size)
                device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
                probe = backbone.forward_features(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
    return int(probe.shape[2]), int(probe.shape[3])


SpatialBuilder = Callable[[int, ModelConfig, int], nn.Module]
VARIANTS: Registry[SpatialBuilder] = Registry("variant")


class Identity2d(nn.Module):
    """The baseline's spatial module: no change, no loss."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return x, {}


class RegularizerOnly(nn.Module):
    """Wraps a map → map regularizer (DropBlock, Dropout2d) into the spatial-module interface."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.module(x), {}


@VARIANTS.register("baseline")
def _baseline(channels: int, cfg: ModelConfig, n_tokens: int) -> nn.Module:
    return Identity2d()


@VARIANTS.register("dropblock")
def _dropblock(channels: int, cfg: ModelConfig, n_tokens: int) -> nn.Module:
    from timm.layers import DropBlock2d

    return RegularizerOnly(DropBlock2d(drop_prob=cfg.drop_prob, block_size=cfg.block_size))


@VARIANTS.register("spatial_dropout")
def _spatial_dropout(channels: int, cfg: ModelConfig, n_tokens: int) -> nn.Module:
    return RegularizerOnly(nn.Dropout2d(p=cfg.drop_prob))


@VARIANTS.register("l0")
def _l0(channels: int, cfg: ModelConfig, n_tokens: int) -> nn.Module:
    return L0Gate(channels, cfg.patch_size, l0_lambda=cfg.l0_lambda, init_keep=cfg.init_keep)


def _ersm(channels: int, cfg: ModelConfig, n_tokens: int) -> nn.Module:
    return EnergyMask(
        channels,
        patch_size=cfg.patch_size,
        alpha=cfg.alpha,
        beta=cfg.beta,
        tau=cfg.tau,
        init_keep=cfg.init_keep,
        pairwise_reduce=cfg.pairwise_reduce,
        bias=cfg.bias,
        n_tokens=n_tokens,
    )


VARIANTS.register("ersm_unary")(_ersm)
VARIANTS.register("ersm_full")(_ersm)


class ERSMModel(nn.Module):
    """backbone → spatial module → GAP → (pre-logits) → Linear.

    Build it with :func:`build_model`. Public pieces the evaluators share:
    :meth:`forward_features`, :meth:`token_scores`, :meth:`gate`, :meth:`pool`,
    :meth:`forward_head` and :meth:`forward`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        backbone = build_backbone(config.backbone, pretrained=config.pretrained)
        self.backbone = backbone.features
        self.pre_logits = backbone.pre_logits
        self.channels = backbone.channels
        self.mean = config.mean or backbone.mean
        self.std = config.std or backbone.std
        self.crop_pct = config.crop_pct or backbone.crop_pct
        self.feature_hw: tuple[int, int] = feature_map_size(self.backbone, config.image_size)
        self.grid = check_patch_size(*self.feature_hw, config.patch_size)
        self.n_tokens = self.grid[0] * self.grid[1]
        self.spatial = VARIANTS.get(config.variant)(self.channels, config, self.n_tokens)
        self.head = nn.Linear(backbone.head_dim, config.num_classes)
        if config.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    # -- structure --------------------------------------------------------------------
    @property
    def has_energy(self) -> bool:
        """True for the ERSM variants (energy, unary and pairwise scores exist)."""
        return isinstance(self.spatial, EnergyMask)

    @property
    def has_gate(self) -> bool:
        """True when the spatial module produces a keep map (ERSM, L0)."""
        return isinstance(self.spatial, (EnergyMask, L0Gate))

    @property
    def head_is_linear(self) -> bool:
        """True when logits are an affine function of the pooled vector (CAM is exact)."""
        return isinstance(self.pre_logits, nn.Identity)

    def train(self, mode: bool = True) -> "ERSMModel":
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    # -- pieces -----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map at the insertion point, [B, C, H, W].

        In eval mode a lone image is run beside a copy of itself: CPU convolution
        kernels take another code path for a batch of one, whose results differ in
        the last float bits, and evaluations must not depend on batch size or
        process count (a shard's last batch may hold a single image).
        """
        lone = not self.training and x.shape[0] == 1
        if lone:
            x = x.expand(2, *x.shape[1:])
        if self.config.freeze_backbone:
            with torch.no_grad():
                out = self.backbone.forward_features(x)
        else:
            out = self.backbone.forward_features(x)
        return out[:1] if lone else out

    def token_scores(self, features: torch.Tensor) -> dict[str, Any]:
        """Per-token scores [B, N] of a feature map (deterministic, eval-mode gate).

        Keys: ``unary``, ``keep``, ``energy_unary``, ``energy_pairwise``, ``energy``,
        ``magnitude`` for ERSM; ``keep`` and ``magnitude`` for L0; ``magnitude`` for
        the rest; plus ``grid`` = (h, w).
        """
        if isinstance(self.spatial, EnergyMask):
            s = self.spatial.scores(features)
            return {
                "unary": s.unary,
                "keep": s.keep,
                "energy_unary": s.energy_unary,
                "energy_pairwise": s.energy_pairwise,
                "energy": s.energy,
                "magnitude": s.magnitude,
                "grid": s.grid,
            }
        if isinstance(self.spatial, L0Gate):
            s = self.spatial.scores(features)
            return {"keep": s["keep"], "magnitude": s["magnitude"], "grid": self.grid}
        _, magnitude = normalize_tokens(tokenize(features, self.config.patch_size))
        return {"magnitude": magnitude, "grid": self.grid}

    def gate(self, features: torch.Tensor) -> torch.Tensor:
        """The spatial module's deterministic output (the soft-gated map Y in eval)."""
        was_training = self.spatial.training
        self.spatial.eval()
        try:
            return self.spatial(features)[0]
        finally:
            self.spatial.train(was_training)

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Global average pooling, [B, C, H, W] → [B, C]."""
        return x.mean(dim=(2, 3))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled [B, C] → logits [B, K]."""
        return self.head(self.pre_logits(pooled))

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        """Logits; with ``return_aux`` also ``{"reg_loss", "keep"?}`` from the same pass."""
        return self.forward_from_features(self.forward_features(x), return_aux)

    def forward_from_features(self, features: torch.Tensor, return_aux: bool = False):
        """The rest of :meth:`forward` after the backbone: spatial module → pool → head."""
        gated, aux = self.spatial(features)
        logits = self.forward_head(self.pool(gated))
        if return_aux:
            aux = dict(aux)
            aux.setdefault("reg_loss", logits.new_zeros(()))
            return logits, aux
        return logits


FROZEN_BACKBONE_SEED = 0  # the random initialization of a frozen backbone built without weights


def seed_free_backbone(model: ERSMModel, config: ModelConfig) -> None:
    """Give ``model`` the frozen backbone drawn from :data:`FROZEN_BACKBONE_SEED`, whatever the training seed.

    A frozen backbone is part of the experiment, not of a training run: with pretrained or
    loaded weights every seed shares it already. A frozen backbone built without weights
    (``pretrained=False``, no ``--weights``) is drawn here from one fixed seed, so that the
    seeds of a variant differ only in what training does (the spatial module's and head's
    initialization, the data order), as they would on pretrained weights, and share one
    backbone pass. The global random state is left as it was.
    """
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(FROZEN_BACKBONE_SEED)
        twin = ERSMModel(config)
    finally:
        torch.random.set_rng_state(state)
    model.backbone.load_state_dict(twin.backbone.state_dict())


def build_model(config: ModelConfig, weights: str | None = None) -> ERSMModel:
    """Build a model from its config; ``weights`` loads a local backbone state dict."""
    model = ERSMModel(config)
    if weights:
        load_backbone_weights(model.backbone, weights)
    return model
