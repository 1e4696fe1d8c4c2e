"""The files a training run writes beside its checkpoint, and the checks made before it starts.

``model.pt`` gets ``model.history.csv`` (one row per finished epoch, rewritten
atomically after each) and, while the run lasts, ``model.state.pt`` (what
``--resume`` continues from; see :mod:`ersm_core.training.state`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ersm_core.errors import ConfigError
from ersm_core.files import atomic_path

__all__ = ["HISTORY_COLUMNS", "history_path", "state_path", "write_history", "check_run_files", "check_writable"]

# train_* are means over the epoch's training images (model in training mode, as it learnt);
# val_acc and val_keep (NaN without a gate or without a validation share) come from the
# end-of-epoch evaluation of the validation images in eval mode; test_acc and test_keep are
# measured once, after the last epoch, and are NaN in every other row; lr is the learning rate
# of the epoch's first step; seconds include the validation
HISTORY_COLUMNS = [
    "epoch", "train_loss", "train_ce", "train_reg", "train_acc", "val_acc", "val_keep", "test_acc", "test_keep",
    "lr", "seconds",
]


def history_path(checkpoint: str | Path) -> Path:
    """``model.pt`` → ``model.history.csv`` in the same folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.history.csv")


def state_path(checkpoint: str | Path) -> Path:
    """``model.pt`` → ``model.state.pt`` in the same folder: the run's resume state."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.state.pt")


def write_history(path: str | Path, history: "pandas.DataFrame") -> Path:  # noqa: F821
    """Write the per-epoch CSV atomically (see :func:`ersm_core.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        history.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def check_writable(path: str | Path, option: str = "--out") -> None:
    """Refuse (ConfigError) a file path that cannot be written: its folder is a file, or not writable.

    Missing folders are fine when they can be made (they are created when the file is written,
    as the evaluations create theirs): the nearest existing folder above ``path`` must be a
    folder, and a real temporary file is written there (then removed), so a read-only mount
    or a full disk is found before any work, not when the result is saved.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {option} {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"cannot write {option} {path}: {reason} in {folder}; choose another {option}") from None


def check_run_files(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse an existing checkpoint, or a history CSV or resume state of another run beside it, unless ``overwrite``.

    The training run's own files (checkpoint, history, state); where the checkpoint may go at all
    (never over an input, only over a checkpoint) is :func:`ersm_eval.output.check_output_file`'s rule.

    With ``resume`` the history and state of the interrupted run are expected, not refused.
    The folder must exist and be writable. Call before training starts.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a checkpoint file name such as {path / 'model.pt'}")
    check_writable(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    for beside, what in ((history_path(path), "history"), (state_path(path), "resume state")):
        if beside.is_dir():
            raise ConfigError(f"{beside} is a folder where this run would write its {what}; choose another --out")
        if beside.exists() and not overwrite and not resume:
            hint = " or --resume to continue it" if what == "resume state" or state_path(path).exists() else ""
            raise ConfigError(
                f"{beside} already exists (the {what} of another run); pass --overwrite to replace it{hint} "
                "or choose another --out"
            )
    return path
