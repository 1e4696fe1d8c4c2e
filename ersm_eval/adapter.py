"""One narrow model adapter: any image classifier seen as spatial map → GAP → head.

The evaluators read a handful of things from a model: ``forward_features`` (the
spatial map [B, C, H, W]), ``token_scores`` (per-token scores on that map),
``gate`` (the map the head pools), ``pool`` (global average pooling),
``forward_head`` (pooled [B, C] → logits), ``head`` / ``head_is_linear`` (the
exact CAM and the fast deletion path), ``grid`` / ``n_tokens`` /
``config.patch_size`` (the token grid), ``has_energy`` / ``has_gate`` /
``config.variant`` (which rankings and maps exist), ``mean`` / ``std`` (the
input normalization, for fills) and ``forward`` (the whole model, input level).

:func:`wrap` gives them for three kinds of model:

- an :class:`~ersm_core.model.ERSMModel` has them all and passes through unchanged;
- a timm CNN (``forward_features`` / ``forward_head``) needs no arguments: its map
  is ``forward_features(x)``; after global average pooling, its own
  ``forward_head`` runs on the pooled vector as a 1×1 map (for an average-pooling
  head that is the same computation);
- any other ``nn.Module`` is split at the submodule named ``layer``, whose output is
  the spatial map (captured by a forward hook, the rest of the forward pass is
  skipped), followed by global average pooling and ``head`` (default: the model's
  last ``nn.Linear``).

Models other than ERSM have no Energy-Mask Layer: ``token_scores`` gives only
``magnitude`` (each token's L2 norm) and ``gate`` is the identity, so rankings
that need energies are skipped with a note. :meth:`ModelAdapter.check_split`
compares the split model's logits with the original ones; the functional API
calls it on the first batch, so a model that does more than GAP + head after the
split point is refused instead of evaluated wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ersm_core.energy import normalize_tokens, tokenize
from ersm_core.errors import ConfigError
from ersm_core.model import ERSMModel

__all__ = ["AdapterConfig", "ModelAdapter", "wrap", "model_kind"]


@dataclass(frozen=True)
class AdapterConfig:
    """The part of an ERSM model's config the evaluators read."""

    variant: str  # what the model is, in messages and summary.json ("timm resnet18", "ResNet")
    patch_size: int = 1  # P: tokens are P×P patches of the spatial map
    backbone: str = ""  # the wrapped model's class or timm name


class _Stop(Exception):
    """Raised by the capture hook to skip the rest of a forward pass."""


def model_kind(model: nn.Module) -> str:
    """'ersm', 'adapter', 'timm' (forward_features + forward_head) or 'module'."""
    if isinstance(model, ERSMModel):
        return "ersm"
    if isinstance(model, ModelAdapter):
        return "adapter"
    if callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None)):
        return "timm"
    return "module"


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(
            f"the {type(model).__name__} model has no nn.Linear to use as its head; pass head= (a module mapping "
            "the pooled [B, C] vector to logits)"
        )
    return found[-1]


def _submodule(model: nn.Module, name: str, what: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        children = ", ".join(n for n, _ in model.named_children()) or "(none)"
        raise ConfigError(
            f"the {type(model).__name__} model has no submodule named {what}={name!r}; its top-level submodules are: "
            f"{children} (nested ones are written with dots, e.g. 'layer4.1')"
        )
    return modules[name]


def _timm_pool_type(model: nn.Module) -> str | None:
    """The pool type of a timm head ('avg', 'max', ...), None when it cannot be told."""
    for owner in (model, getattr(model, "head", None)):
        pool = getattr(owner, "global_pool", None)
        if pool is not None and hasattr(pool, "pool_type"):
            return str(pool.pool_type)
        if isinstance(pool, str):
            return pool
    return None


class ModelAdapter(nn.Module):
    """A classifier split into spatial map → global average pooling → head (build it with :func:`wrap`).

    Args:
        model: the original model (kept as ``self.model``; its forward is :meth:`forward`).
        kind: 'timm' or 'module'.
        layer: 'module' kind: the submodule whose output is the spatial map.
        head: 'module' kind: pooled [B, C] → logits.
        layer_name: the name ``layer`` had, for messages and summary.json.
        patch_size: P, tokens are P×P patches of the map.
        mean: the input normalization mean (for fills that need it), or ().
        std: its standard deviation, or ().
    """

    has_energy = False  # no Energy-Mask Layer: energy, unary and their rankings do not exist
    has_gate = False  # no keep map: gate is the identity

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        layer: nn.Module | None = None,
        head: nn.Module | None = None,
        layer_name: str = "",
        head_name: str = "",
        patch_size: int = 1,
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
    ) -> None:
        super().__init__()
        if patch_size < 1:
            raise ConfigError(f"patch_size must be at least 1, got {patch_size}")
        self.model = model
        self.kind = kind
        self.layer_name = layer_name
        self.head_name = head_name
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._layer = layer
        name = type(model).__name__
        if kind == "timm":
            timm_name = getattr(model, "default_cfg", {}).get("architecture") if hasattr(model, "default_cfg") else None
            name = f"timm {timm_name or name}"
            pool = _timm_pool_type(model)
            if pool not in (None, "avg"):
                raise ConfigError(
                    f"this {name} model pools its map with {pool!r}; the evaluators need global average pooling "
                    "(create it with global_pool='avg', or pass layer= and head= to wrap())"
                )
            classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
            if isinstance(classifier, nn.Linear):
                self.head = classifier
            elif head is not None:
                self.head = head
            else:
                raise ConfigError(
                    f"this {name} model has no classifier (num_classes=0?); create it with num_classes=K or pass head="
                )
            self._linear = self._timm_head_is_linear()
        else:
            self.head = head
            self._linear = isinstance(head, nn.Linear)
        self.config = AdapterConfig(variant=name, patch_size=int(patch_size), backbone=name)
        self.feature_hw: tuple[int, int] | None = None

    # -- structure --------------------------------------------------------------------
    @property
    def head_is_linear(self) -> bool:
        """True when logits = head.weight · pooled + head.bias (the CAM is exact)."""
        return self._linear

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (h, w) of the map, known once a batch has been seen."""
        if self.feature_hw is None:
            raise ConfigError(
                "the token grid of a wrapped model is known only after it has seen an image; run "
                "model.forward_features(x) once (the ersm_eval functions do this for you)"
            )
        patch = self.config.patch_size
        return self.feature_hw[0] // patch, self.feature_hw[1] // patch

    @property
    def n_tokens(self) -> int:
        """N = h · w."""
        grid_h, grid_w = self.grid
        return grid_h * grid_w

    def describe(self) -> dict[str, Any]:
        """Plain description for summary.json."""
        return {
            "kind": self.kind, "model": self.config.variant, "layer": self.layer_name, "head": self.head_name,
            "head_is_linear": self.head_is_linear, "patch_size": self.config.patch_size,
            "feature_hw": list(self.feature_hw) if self.feature_hw else None, "mean": list(self.mean),
            "std": list(self.std),
        }

    @torch.no_grad()
    def _timm_head_is_linear(self) -> bool:
        """A timm head is linear when its pre-logits step returns the pooled vector unchanged."""
        classifier = self.head
        if not isinstance(classifier, nn.Linear):
            return False
        was_training = self.model.training
        self.model.eval()
        try:
            probe = torch.linspace(-1.0, 1.0, classifier.in_features, device=classifier.weight.device)
            probe = probe.to(classifier.weight.dtype)[None].repeat(2, 1)
            probe[1] = probe[1].flip(0) * 3.0
            try:
                out = self.model.forward_head(probe[:, :, None, None], pre_logits=True)
            except (TypeError, RuntimeError):
                return False
            return tuple(out.shape) == tuple(probe.shape) and bool(torch.equal(out.flatten(1), probe))
        finally:
            self.model.train(was_training)

    # -- pieces (the names ERSMModel has) ---------------------------------------------
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "timm":
            return self.model.forward_features(x)
        captured: list[torch.Tensor] = []

        def hook(module, inputs, output):
            captured.append(output)
            raise _Stop

        handle = self._layer.register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ConfigError(f"submodule {self.layer_name!r} never ran in the model's forward pass; pass another layer=")
        return captured[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial map [B, C, H, W] (a lone image in eval mode runs beside a copy, as ERSMModel does)."""
        lone = not self.training and x.shape[0] == 1
        out = self._features(x.expand(2, *x.shape[1:]) if lone else x)
        if not torch.is_tensor(out) or out.dim() != 4:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            where = f"submodule {self.layer_name!r}" if self.kind == "module" else "forward_features"
            raise ConfigError(
                f"{where} of the {self.config.variant} model gives {shape}, not a spatial map [B, C, H, W]; "
                "wrap() needs a CNN-like model (for one with token outputs, pass layer= naming a module with a 4-d output)"
            )
        hw = (int(out.shape[2]), int(out.shape[3]))
        patch = self.config.patch_size
        if hw[0] % patch or hw[1] % patch:
            raise ConfigError(f"the map is {hw[0]}×{hw[1]}, which patch_size={patch} does not divide; pick a divisor")
        if self.feature_hw is None:
            self.feature_hw = hw
        elif hw != self.feature_hw:
            raise ConfigError(
                f"the map is {hw[0]}×{hw[1]} for this batch but was {self.feature_hw[0]}×{self.feature_hw[1]} before; "
                "every image must have the same size (resize them in the dataset's transform)"
            )
        return out[:1] if lone else out

    def token_scores(self, features: torch.Tensor) -> dict[str, Any]:
        """``magnitude`` [B, N] (each token's L2 norm) and ``grid``: no energies without an Energy-Mask Layer."""
        _, magnitude = normalize_tokens(tokenize(features, self.config.patch_size))
        return {"magnitude": magnitude, "grid": self.grid}

    def gate(self, features: torch.Tensor) -> torch.Tensor:
        """The identity: the head pools the map itself."""
        return features

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Global average pooling, [B, C, H, W] → [B, C]."""
        return x.mean(dim=(2, 3))

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled [B, C] → logits [B, K]."""
        if self.kind == "timm":
            return self.model.forward_head(pooled[:, :, None, None])
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The original model's logits (a lone image in eval mode runs beside a copy)."""
        lone = not self.training and x.shape[0] == 1
        out = self.model(x.expand(2, *x.shape[1:]) if lone else x)
        return out[:1] if lone else out

    @torch.no_grad()
    def split_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits through the split: forward_head(pool(gate(forward_features(x))))."""
        return self.forward_head(self.pool(self.gate(self.forward_features(x))))

    @torch.no_grad()
    def check_split(self, x: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> float:
        """Raise ConfigError unless the split model's logits equal the original model's on ``x``.

        Returns:
            The largest absolute difference.
        """
        was_training = self.training
        self.eval()
        try:
            whole = self.forward(x)
            try:
                split = self.split_logits(x)
            except RuntimeError as err:  # shape mismatches between the map, the pooled vector and the head
                raise ConfigError(
                    f"the {self.config.variant} model split at {self.layer_name or 'forward_features'!r} cannot run "
                    f"its head on the pooled map ({err}); choose the layer right before the global pooling "
                    "('layer4' for torchvision ResNets) or pass the right head="
                ) from None
        finally:
            self.train(was_training)
        if not torch.is_tensor(whole) or whole.shape != split.shape:
            got = tuple(whole.shape) if torch.is_tensor(whole) else type(whole).__name__
            raise ConfigError(
                f"the {self.config.variant} model returns {got}, but the split at {self.layer_name or 'forward_features'!r} "
                f"gives logits of shape {tuple(split.shape)}; pass the right head= (default: the last nn.Linear)"
            )
        diff = float((split.float() - whole.float()).abs().max()) if split.numel() else 0.0
        if not torch.allclose(split.float(), whole.float(), atol=atol, rtol=rtol):
            raise ConfigError(
                f"the {self.config.variant} model split at {self.layer_name or 'forward_features'!r} does not reproduce "
                f"its logits (largest difference {diff:.3g}): after that point the model must do only global average "
                "pooling and then head=; choose the layer right before the pooling (e.g. 'layer4' for torchvision ResNets)"
            )
        return diff


def wrap(
    model: nn.Module,
    layer: str | None = None,
    head: str | nn.Module | None = None,
    patch_size: int = 1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """The model as the evaluators see it: spatial map → global average pooling → head.

    Args:
        model: an ERSM model (returned unchanged), a timm CNN (no other argument needed), or any
            ``nn.Module`` classifier (give ``layer``).
        layer: name of the submodule whose output is the spatial map [B, C, H, W], as in
            ``model.named_modules()`` (torchvision ResNets: ``'layer4'``). Required for models
            that are neither ERSM nor timm.
        head: the module (or its name) mapping the pooled [B, C] vector to logits; default the
            model's last ``nn.Linear``.
        patch_size: tokens are P×P patches of the map (1: every map position is a token).
        mean: the input normalization mean (needed only by the ``black`` fills); default the timm
            model's pretrained config, else unknown.
        std: its standard deviation.

    Returns:
        The ERSM model itself, or a :class:`ModelAdapter`.

    Raises:
        ConfigError: unknown layer or head names, a model with no Linear head, a non-average pool.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"wrap() takes a torch.nn.Module, got {type(model).__name__}")
    kind = model_kind(model)
    if kind in ("ersm", "adapter"):
        if layer is not None or head is not None:
            raise ConfigError(f"{'an ERSM model' if kind == 'ersm' else 'a wrapped model'} is split already; drop layer= and head=")
        return model
    if mean is None or std is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = tuple(mean if mean is not None else cfg.get("mean", ()))
        std = tuple(std if std is not None else cfg.get("std", ()))
    if len(mean) != len(std):
        raise ConfigError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}")
    head_name = ""
    head_module: nn.Module | None = None
    if isinstance(head, str):
        head_name, head_module = head, _submodule(model, head, "head")
    elif head is not None:
        head_module = head
        head_name = type(head).__name__
    if layer is None and kind == "timm":
        return ModelAdapter(model, "timm", head=head_module, head_name=head_name, patch_size=patch_size, mean=mean, std=std)
    if layer is None:
        children = ", ".join(n for n, _ in model.named_children()) or "(none)"
        raise ConfigError(
            f"wrap() needs layer= for a {type(model).__name__} model: the name of the submodule whose output is the "
            f"spatial map before global average pooling ('layer4' for torchvision ResNets); its top-level submodules "
            f"are: {children}"
        )
    layer_module = _submodule(model, layer, "layer")
    if head_module is None:
        head_name, head_module = _last_linear(model)
    return ModelAdapter(model, "module", layer=layer_module, head=head_module, layer_name=layer, head_name=head_name,
                        patch_size=patch_size, mean=mean, std=std)
