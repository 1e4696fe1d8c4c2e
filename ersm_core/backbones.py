"""Backbones: the paper's compact CNN and any timm CNN through ``forward_features``.

Each builder returns a :class:`Backbone`: the module producing the map at the
insertion point, its channel count, and the pre-logits step of its own head where
it has one (ConvNeXt's norm), applied to the pooled vector.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ersm_core.errors import CheckpointError, ConfigError

__all__ = ["Backbone", "CompactCNN", "PooledPreLogits", "build_backbone", "load_backbone_weights"]


@dataclass
class Backbone:
    """A feature extractor and what the model needs to know about it."""

    features: nn.Module  # x [B, 3, S, S] -> map [B, C, H, W] via .forward_features
    channels: int  # C
    pre_logits: nn.Module  # pooled [B, C] -> [B, C'] before the new Linear
    head_dim: int  # C'
    mean: tuple[float, float, float]  # input normalization of the backbone
    std: tuple[float, float, float]
    crop_pct: float  # resize to size / crop_pct, then centre-crop


class CompactCNN(nn.Module):
    """The paper's pilot backbone: four conv 3×3 + ReLU + 2×2 max-pool blocks, 256 channels last.

    A 128×128 input gives an 8×8 map.
    """

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for width in widths:
            layers += [nn.Conv2d(prev, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = width
        self.body = nn.Sequential(*layers)
        self.num_features = prev

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class PooledPreLogits(nn.Module):
    """Applies a timm head's norm (written for [B, C, 1, 1] or [B, C]) and pre-logits to a pooled vector."""

    def __init__(self, norm: nn.Module, pre_logits: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.pre_logits = pre_logits

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.norm(pooled[:, :, None, None]).flatten(1)
        return self.pre_logits(x)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return text[:300] or type(err).__name__


@contextmanager
def _quiet_hub(cache_only: bool) -> Iterator[None]:
    """Silence huggingface_hub's retry warnings (and Python warnings) for the block; with
    ``cache_only``, also keep it off the network (its offline mode: the local cache or an error at once)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without the hub: torch.hub URLs only
        constants = None
    hub_logger = logging.getLogger("huggingface_hub")
    level, offline = hub_logger.level, getattr(constants, "HF_HUB_OFFLINE", False)
    hub_logger.setLevel(logging.CRITICAL)
    if constants is not None and cache_only:
        constants.HF_HUB_OFFLINE = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hub_logger.setLevel(level)
        if constants is not None:
            constants.HF_HUB_OFFLINE = offline


def _is_download_error(err: BaseException) -> bool:
    """A failure to find the weights in the cache or to fetch them (not a bug or a bad name)."""
    if isinstance(err, (OSError, ConnectionError, TimeoutError)):  # LocalEntryNotFoundError, HTTP errors, URLError, ...
        return True
    return type(err).__module__.split(".")[0] in ("huggingface_hub", "httpx", "httpx2", "httpcore", "httpcore2",
                                                   "requests", "urllib3")


def _hub_reachable(timeout: float = 5.0) -> bool:
    """False when a TCP connection to the Hugging Face Hub's host fails (no network, no DNS).

    With a proxy configured the answer is always True: only the download itself can tell.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
    except Exception:  # noqa: BLE001 - no hub client: let the download decide
        return True
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _create_pretrained(name: str) -> nn.Module:
    """timm model with pretrained weights: from the local cache first (no network, no retries),
    then by download; a failure of both is one ConfigError saying what to do instead."""
    import timm

    try:
        with _quiet_hub(cache_only=True):
            return timm.create_model(name, pretrained=True)
    except Exception:  # noqa: BLE001 - not cached (or not on the hub): try the network below
        pass
    try:
        if not _hub_reachable():  # offline: fail at once instead of a minute of silent retries
            raise ConnectionError("the Hugging Face Hub cannot be reached")
        with _quiet_hub(cache_only=False):
            return timm.create_model(name, pretrained=True)
    except Exception as err:  # noqa: BLE001 - sorted into a download failure or another failure
        if _is_download_error(err):
            raise ConfigError(
                f"the pretrained weights of {name!r} are not in the local cache and could not be downloaded "
                f"({type(err).__name__}); pass --weights PATH with a local weights file (.safetensors or .pth), "
                "or run once with network access to fill the cache"
            ) from None
        raise ConfigError(f"could not create timm backbone {name!r} with pretrained weights: {_first_line(err)}") from None


def _timm_backbone(name: str, pretrained: bool) -> Backbone:
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"unknown backbone {name!r}: use 'compact_cnn' or a timm model name such as resnet50, convnext_tiny, efficientnetv2_s")
    if pretrained:
        model = _create_pretrained(name)
    else:
        try:
            model = timm.create_model(name, pretrained=False)
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ConfigError(f"could not create timm backbone {name!r}: {_first_line(err)}") from None
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "norm") and hasattr(head, "fc"):
        # NormMlpClassifierHead (ConvNeXt and kin): pool -> norm -> flatten -> pre_logits -> fc
        pre_logits: nn.Module = PooledPreLogits(head.norm, getattr(head, "pre_logits", nn.Identity()))
        model.head = nn.Identity()
    else:
        pre_logits = nn.Identity()
        model.reset_classifier(0)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    head_dim = model.num_features
    if isinstance(pre_logits, PooledPreLogits) and hasattr(pre_logits.pre_logits, "fc"):
        head_dim = pre_logits.pre_logits.fc.out_features
    return Backbone(
        features=model,
        channels=model.num_features,
        pre_logits=pre_logits,
        head_dim=head_dim,
        mean=tuple(cfg.get("mean", _IMAGENET_MEAN)),
        std=tuple(cfg.get("std", _IMAGENET_STD)),
        crop_pct=float(cfg.get("crop_pct", 0.875) or 0.875),
    )


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    """Build ``compact_cnn`` or a timm CNN by name."""
    if name == "compact_cnn":
        if pretrained:
            raise ConfigError("compact_cnn has no pretrained weights; drop --pretrained or pick a timm backbone")
        net = CompactCNN()
        return Backbone(net, net.num_features, nn.Identity(), net.num_features, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1.0)
    return _timm_backbone(name, pretrained)


def load_backbone_weights(module: nn.Module, path: str | Path) -> list[str]:
    """Load a local state dict (``.pt``/``.pth`` or ``.safetensors``) into a backbone.

    Classifier keys the backbone no longer has are ignored; missing backbone keys
    raise. Never unpickles code. Returns the ignored keys.
    """
    from ersm_core.checkpoint import check_archive, check_state_tensors, quiet_load  # checkpoint imports this module
    from ersm_core.checkpoint.safetensors import read_tensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        state, _ = read_tensors(path, ".safetensors file")  # header bounded and checked before any tensor
    else:
        check_archive(path, what="weights file")  # zip bombs, overlapping records, plain pickles
        try:
            state = quiet_load(path)
        except Exception as err:  # noqa: BLE001 - any failure here is a bad file
            raise CheckpointError(f"could not read weights from {path} as a plain state dict (code is never unpickled): {_first_line(err)}") from None
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    check_state_tensors(state, path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise CheckpointError(
            f"{path} does not fit this backbone: {len(missing)} weights missing or of another shape "
            f"(first: {missing[:3]}); is it for the same architecture?"
        )
    module.load_state_dict(usable)
    return sorted(set(state) - set(usable))
