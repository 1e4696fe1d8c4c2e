"""Core of ersm-eval: the Energy-Mask Layer, model variants, backbones, datasets, checkpoints, training."""

from ersm_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from ersm_core.energy import EnergyMask
from ersm_core.errors import CheckpointError, ConfigError, DatasetError, ERSMError
from ersm_core.l0 import L0Gate
from ersm_core.model import ERSMModel, ModelConfig, build_model

__all__ = [
    "EnergyMask",
    "L0Gate",
    "ERSMModel",
    "ModelConfig",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "LoadedCheckpoint",
    "ERSMError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
]
