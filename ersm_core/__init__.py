"""Core of ersm-eval: the Energy-Mask Layer, model variants, backbones, datasets, checkpoints, training.

The errors are imported at once; everything else on first use, so that
``import ersm_core.errors`` (and ``ersm-eval --help``) needs no torch.
"""

from importlib import import_module
from typing import Any

from ersm_core.errors import CheckpointError, ConfigError, DatasetError, ERSMError

# name -> module, imported on first use
_EXPORTS = {
    "EnergyMask": "ersm_core.energy",
    "L0Gate": "ersm_core.l0",
    "ERSMModel": "ersm_core.model",
    "ModelConfig": "ersm_core.config",
    "TrainConfig": "ersm_core.config",
    "build_model": "ersm_core.model",
    "save_checkpoint": "ersm_core.checkpoint",
    "load_checkpoint": "ersm_core.checkpoint",
    "LoadedCheckpoint": "ersm_core.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ersm_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "EnergyMask",
    "L0Gate",
    "ERSMModel",
    "ModelConfig",
    "TrainConfig",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "LoadedCheckpoint",
    "ERSMError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
]
