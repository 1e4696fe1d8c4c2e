"""Training a model variant (the ERSM paper's protocol), in files by concept.

- :mod:`~ersm_core.training.loop`: :func:`train` and :class:`TrainResult` (the epochs, the test pass)
- :mod:`~ersm_core.training.evaluate`: accuracy and mean keep probability on a loader
- :mod:`~ersm_core.training.features`, :mod:`~ersm_core.training.cached`,
  :mod:`~ersm_core.training.storage`: frozen-backbone features computed once, in memory or on disk
- :mod:`~ersm_core.training.grid`: :func:`train_grid`, a grid of variants × seeds in one process,
  sharing the frozen backbone's features (:mod:`~ersm_core.training.shared`)
- :mod:`~ersm_core.training.state`: the resume state written after every epoch
- :mod:`~ersm_core.training.history`: the history CSV and the checks made before a run
- :mod:`~ersm_core.training.progress`: the hooks a run calls as it goes
- :mod:`~ersm_core.training.loader`: the seeded DataLoader

:class:`TrainConfig` lives in :mod:`ersm_core.config` (no torch) and is re-exported here.
"""

from ersm_core.config import TrainConfig
from ersm_core.training.evaluate import evaluate
from ersm_core.training.features import view_flips
from ersm_core.training.history import (HISTORY_COLUMNS, check_run_files, check_writable, history_path, state_path,
                                        write_history)
from ersm_core.training.grid import GridMember, GridProgress, grid_members, time_left, train_grid
from ersm_core.training.loop import TrainResult, train
from ersm_core.training.progress import TrainProgress
from ersm_core.training.shared import SharedFeatures
from ersm_core.training.state import load_state

__all__ = [
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "HISTORY_COLUMNS",
    "train",
    "evaluate",
    "history_path",
    "state_path",
    "check_run_files",
    "check_writable",
    "write_history",
    "view_flips",
    "load_state",
    "GridMember",
    "GridProgress",
    "SharedFeatures",
    "grid_members",
    "time_left",
    "train_grid",
]
