"""Training a grid of variants × seeds in one process, from one backbone pass where the backbone is frozen.

Papers report each variant's accuracy as mean ± std over training seeds. Every member
(variant, seed) of a grid is trained by :func:`~ersm_core.training.train` exactly as a
separate run with that variant and seed would be, so its checkpoint and history are
the same; with a frozen backbone and the feature cache the members share the cached
backbone features (:class:`~ersm_core.training.shared.SharedFeatures`) instead of
computing them once each. Members run seed by seed (every variant of the first seed,
then of the next), so the members that share a backbone follow each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

from ersm_core.config import VARIANT_NAMES, ModelConfig, TrainConfig
from ersm_core.errors import ConfigError
from ersm_core.training.loop import TrainResult, train
from ersm_core.training.progress import TrainProgress
from ersm_core.training.shared import SharedFeatures

__all__ = ["GridMember", "GridProgress", "grid_members", "time_left", "train_grid"]


@dataclass(frozen=True)
class GridMember:
    """One model of a grid."""

    variant: str  # the spatial module (a name of VARIANT_NAMES)
    seed: int  # the training seed

    @property
    def name(self) -> str:
        """``ersm_full-s2``: the file stem of its checkpoint in the grid's folder."""
        return f"{self.variant}-s{self.seed}"

    def path(self, folder: str | Path, suffix: str = ".pt") -> Path:
        """Its checkpoint in ``folder``: ``<variant>-s<seed>.pt`` (history and state beside it)."""
        return Path(folder) / f"{self.name}{suffix}"


def _duplicates(values: Sequence[Any]) -> list[Any]:
    return sorted({v for v in values if list(values).count(v) > 1}, key=str)


def grid_members(variants: Sequence[str], seeds: Sequence[int]) -> list[GridMember]:
    """The members of the grid variants × seeds, seed by seed (each seed's variants in the order given).

    Raises:
        ConfigError: an empty list, a variant listed twice or not known (the message lists the
            known names), a seed listed twice, or a seed that is not a whole number ≥ 0.
    """
    variants, seeds = list(variants), list(seeds)
    if not variants or not seeds:
        raise ConfigError("a training grid needs at least one variant and one seed")
    unknown = [v for v in variants if v not in VARIANT_NAMES]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r} in --variants; choose from {', '.join(VARIANT_NAMES)}")
    for values, option in ((variants, "--variants"), (seeds, "--seeds")):
        repeated = _duplicates(values)
        if repeated:
            raise ConfigError(f"{option} lists {', '.join(map(str, repeated))} more than once; give each once")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ConfigError(f"--seeds takes whole numbers from 0, got {bad[0]!r}")
    return [GridMember(v, s) for s in seeds for v in variants]


def time_left(elapsed: float, feature_seconds: float, done: int, left: int) -> float | None:
    """Seconds the ``left`` members still need: the mean time of the ``done`` ones, backbone passes excluded.

    The backbone pass is paid once, by the first member that needs it, so it is taken out of
    the mean (``feature_seconds``, the time the passes so far took). None before any member is done.
    """
    if done <= 0:
        return None
    return max(0.0, elapsed - feature_seconds) / done * left


class GridProgress:
    """Hooks :func:`train_grid` calls around each member; every one does nothing by default."""

    def member_start(self, index: int, total: int, member: GridMember, elapsed: float, left: float | None) -> None:
        """Before member ``index`` (1-based) of ``total``, with the grid's seconds so far and estimated left."""

    def member_end(self, index: int, total: int, member: GridMember, result: TrainResult, elapsed: float,
                   left: float | None) -> None:
        """After member ``index`` trained (before the caller saves it)."""

    def run(self, member: GridMember) -> TrainProgress:
        """The hooks of the member's own run (epochs, batches)."""
        return TrainProgress()


def train_grid(
    model_config: ModelConfig,
    train_config: TrainConfig,
    members: Sequence[GridMember],
    weights: str | Path | None = None,
    progress: GridProgress | None = None,
    files: Callable[[GridMember], tuple[Path | None, Path | None]] | None = None,
    resume: Collection[GridMember] = (),
) -> Iterator[tuple[GridMember, TrainResult]]:
    """Train each member in turn and yield (member, result) as soon as it is trained.

    Args:
        model_config: every option of the models but the variant (taken from each member).
        train_config: every training option but the seed (taken from each member).
        members: the members to train, in order (see :func:`grid_members`).
        weights: optional local backbone state dict, the same for every member.
        progress: hooks around each member and for each member's run.
        files: member → (history CSV, resume state) rewritten after each epoch, as
            :func:`~ersm_core.training.train` writes them; None writes neither.
        resume: the members to continue from their resume state rather than start.

    Yields:
        (member, its TrainResult): equal to a separate ``train`` call with the member's
        variant and seed. Save each before asking for the next (the grid keeps none).
    """
    progress = progress or GridProgress()
    started, total = time.monotonic(), len(members)
    with SharedFeatures() as shared:
        for index, member in enumerate(members, start=1):
            elapsed = time.monotonic() - started
            left = time_left(elapsed, shared.seconds, index - 1, total - index + 1)
            progress.member_start(index, total, member, elapsed, left)
            history_file, state_file = files(member) if files is not None else (None, None)
            result = train(replace(model_config, variant=member.variant), replace(train_config, seed=member.seed),
                           weights=weights, progress=progress.run(member), history_file=history_file,
                           state_file=state_file, resume=member in resume, shared=shared)
            elapsed = time.monotonic() - started
            progress.member_end(index, total, member, result, elapsed, time_left(elapsed, shared.seconds, index,
                                                                                  total - index))
            yield member, result
