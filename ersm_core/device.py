"""Device choice: CUDA when present, else CPU, unless the user names one."""

from __future__ import annotations

import torch

from ersm_core.errors import ConfigError

__all__ = ["select_device"]

_HELP = "use auto, cpu, cuda or cuda:N"


def select_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"`` → cuda if available else cpu; otherwise the named device, checked.

    Only cpu, cuda (cuda:N with N below the number of GPUs) and mps are accepted, and
    only where they exist: a device that is not there is one clear ConfigError, not
    a failure deep inside the first forward pass.
    """
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name).strip().lower())
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; {_HELP}") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ConfigError(f"unknown device {name!r}; there is one cpu device: {_HELP}")
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
        return device
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"device {name!r} requested but Apple's MPS is not available here; use --device cpu (or auto)")
        return device
    raise ConfigError(f"unsupported device {name!r}; {_HELP}")
