"""The resume state of a training run: everything needed to continue it after a kill.

After every epoch the run writes ``<out stem>.state.pt`` beside its checkpoint, atomically
(:func:`ersm_core.files.atomic_path`): the model, optimizer and scheduler state dicts, the
random states (Python, numpy, torch CPU and every CUDA device), the shuffling generator of
the training loader, the finished epochs' history rows and both configs. Only plain types
and tensors are stored, and the file is read with ``torch.load(weights_only=True)`` after the
archive check the checkpoint reader uses, so it never runs pickled code. Continuing from it
gives the same history and weights as a run that was never stopped (same seed, CPU). Taking
the state draws no random numbers, so saving it does not change a run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ersm_core.errors import CheckpointError, ConfigError
from ersm_core.files import atomic_path
from ersm_core.plain import to_plain

__all__ = ["STATE_FORMAT", "rng_state", "restore_rng", "save_state", "load_state", "check_resumable", "comparable_train_config"]

STATE_FORMAT = "ersm-eval training state"
_VERSION = 1
# options that change where things are kept, not what the run computes
_NOT_COMPARED = ("feature_cache_dir",)


def rng_state() -> dict[str, Any]:
    """The global random states as plain data and tensors (reading them draws nothing)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states :func:`rng_state` took."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((str(kind), keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def comparable_train_config(train_config: dict[str, Any]) -> dict[str, Any]:
    """The training options a resumed run must share with the saved one."""
    return {k: v for k, v in train_config.items() if k not in _NOT_COMPARED}


def save_state(path: str | Path, *, epoch: int, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, loader_generator: torch.Generator, rows: list[dict[str, float]],
               model_config: dict[str, Any], train_config: dict[str, Any], world_size: int) -> Path:
    """Write the state after epoch ``epoch`` atomically (a kill mid-write leaves the previous one)."""
    payload = {
        "format": STATE_FORMAT,
        "format_version": _VERSION,
        "epoch": int(epoch),
        "step": int(step),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": to_plain(scheduler.state_dict()),
        "rng": rng_state(),
        "loader_generator": loader_generator.get_state(),
        "rows": to_plain(rows),
        "model_config": to_plain(model_config),
        "train_config": to_plain(train_config),
        "world_size": int(world_size),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state file as data only; CheckpointError when it is missing or not one."""
    from ersm_core.checkpoint import check_archive, quiet_load

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"nothing to resume: no training state at {path} (it is written after every epoch and removed when a "
            "run completes); start the run without --resume"
        )
    check_archive(path, "ersm-eval training state")
    try:
        state = quiet_load(path)
    except Exception:  # noqa: BLE001 - damaged or foreign: one message
        raise CheckpointError(f"{path} is not a readable ersm-eval training state; remove it and start again") from None
    keys = ("epoch", "step", "model", "optimizer", "scheduler", "rng", "loader_generator", "rows", "model_config",
            "train_config", "world_size")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("format_version") != _VERSION \
            or any(k not in state for k in keys):
        raise CheckpointError(f"{path} is not an ersm-eval training state of this version; remove it and start again")
    return state


def _differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    return [f"{k} {saved.get(k)!r} → {requested.get(k)!r}" for k in sorted(set(saved) | set(requested))
            if saved.get(k) != requested.get(k)]


def check_resumable(path: Path, state: dict[str, Any], model_config: dict[str, Any], train_config: dict[str, Any],
                    world_size: int) -> None:
    """ConfigError naming the options that differ from the saved run's (a resumed run must repeat them all)."""
    differences = _differences(to_plain(state["model_config"]), to_plain(model_config))
    differences += _differences(comparable_train_config(to_plain(state["train_config"])),
                                comparable_train_config(to_plain(train_config)))
    if int(state["world_size"]) != world_size:
        differences.append(f"processes {state['world_size']} → {world_size}")
    if differences:
        raise ConfigError(
            f"cannot resume from {path}: the run was started with other options ({'; '.join(differences[:6])}); "
            "repeat the original options, or start afresh with --overwrite"
        )
