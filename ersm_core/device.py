"""Device choice: CUDA when present, else CPU, unless the user names one."""

from __future__ import annotations

import torch

from ersm_core.errors import ConfigError

__all__ = ["select_device"]


def select_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"`` → cuda if available else cpu; otherwise the named device, checked."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return device
