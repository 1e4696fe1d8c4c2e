"""The comparison pipeline: a study whose groups have one checkpoint each.

Every checkpoint is evaluated (deletion at feature level, sparsity with the randomization
check of its maps, occlusion) on the same images by the study's own evaluation
(:func:`~ersm_eval.pipelines.study.evaluate_members`: checkpoints whose frozen backbones are
equal share one backbone pass per image). The results are saved into sub-folders of one
(temporary) folder, ready for one comparative report, and the study's tables are written
beside them with every checkpoint its own group (``groups.csv``, ``members.csv``,
``group_summary.csv`` and ``group_differences.csv``: the paired difference of every two
checkpoints on the same images, with its interval).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.common import ProgressBar, join_group, no_progress, save_result

__all__ = ["SKIPPABLE", "Comparison", "compare_evaluations", "check_skip", "check_same_classes"]

SKIPPABLE = ("occlusion", "sparsity")  # deletion is the comparison's core and always runs


@dataclass
class Comparison:
    """What :func:`compare_evaluations` leaves: the sub-folders written (in report order), the images, the
    checkpoints that shared a backbone pass, and the images an interrupted comparison had finished."""

    folders: list[Path]
    n_images: int = 0
    bundles: list[list[str]] = field(default_factory=list)
    resumed_images: int = 0  # counted once per bundle, as the progress bar counts them


def compare_evaluations(
    folder: Path,
    checkpoints: Sequence[Path],
    labels: Sequence[str],
    dataset: str,
    deletion: DeletionSettings,
    occlusion: OcclusionSettings,
    *,
    skip: Sequence[str] = (),
    split: str = "test",
    data_root: Path | None = None,
    limit: int | None = None,
    subset_seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    progress: ProgressBar = no_progress,
    options: dict[str, Any] | None = None,
    randomization: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    resume_out: Path | None = None,
    resume: bool = False,
) -> Comparison:
    """Evaluate every checkpoint and save each result into a sub-folder of ``folder``.

    Sub-folders: deletion-<label>, sparsity-<label> (unless skipped) and one occlusion folder for
    all checkpoints together; beside them the study tables with one group per checkpoint. No
    report is written (the caller renders the folders).

    Args:
        folder: the (temporary) output folder, which the caller owns.
        checkpoints: the checkpoint files, trained on the same classes.
        labels: one distinct name per checkpoint.
        dataset: a registered dataset name.
        deletion: the deletion settings (feature level; the label is each checkpoint's).
        occlusion: the occlusion settings.
        skip: evaluations to leave out (occlusion, sparsity).
        options: the command's options, recorded in each summary.json.
        randomization: add map_randomization.csv to each sparsity folder (a second read of the images).
        n_boot: replicates of the study tables' bootstrap; seed: its seed (and the randomization check's).
        resume_out: the folder the comparison becomes (``folder`` is its temporary name): the finished
            images' records are kept beside it while the evaluations run, as a study keeps them
            (:mod:`~ersm_eval.pipelines.study_resume`), and removed once the tables are written.
        resume: go on from the images an interrupted comparison writing ``resume_out`` finished (the
            randomization check, a second read of the images, runs again).
        split, data_root, limit, subset_seed, device, batch_size, workers, progress: as for
            :func:`~ersm_eval.pipelines.run_deletion`.

    Returns:
        The :class:`Comparison` (its ``folders``: the sub-folders written, in report order).

    Raises:
        ConfigError: other classes, a bad ``skip`` or deletion level, a start under torchrun, or a resume of
            a comparison with other checkpoints or settings: before any evaluation.
    """
    from ersm_core.checkpoint import load_checkpoint
    from ersm_eval.api import combine_occlusion
    from ersm_eval.pipelines.sparsity import add_map_randomization
    from ersm_eval.pipelines.study import check_shared_pass, eval_setups, evaluate_members, write_study_tables
    from ersm_eval.pipelines.study_bundle import EVALUATIONS
    from ersm_eval.pipelines.study_resume import StudyStores
    from ersm_eval.studies import GROUPS_FILE, one_group_each

    skip = check_skip(skip)
    check_shared_pass("a comparison", deletion)
    loaded = {label: load_checkpoint(path) for label, path in zip(labels, checkpoints)}  # read once, weights only
    check_same_classes(checkpoints, list(loaded.values()))
    started, options = time.time(), dict(options or {})
    setups = eval_setups(loaded, dataset, split, data_root, limit, join_group(device), subset_seed)
    stores = None if resume_out is None else StudyStores(
        Path(resume_out), setups, dataset, split, deletion, occlusion, [k for k in EVALUATIONS if k not in skip],
        batch_size, resume)  # a resume is checked before any image is read
    results, bundles, passes = evaluate_members(setups, deletion, occlusion, skip, batch_size, workers, progress,
                                                "compare", stores=stores)
    if randomization and "sparsity" not in skip:
        for label, setup in setups.items():
            add_map_randomization(setup, results[label]["sparsity"], label, seed, batch_size, workers, False, progress)
    sources = {label: {"label": label, **setup.describe()} for label, setup in setups.items()}

    def save(name: str, result: Any, source: dict, **fields: Any) -> Path:
        save_result(result, folder / name, False, {**options, "checkpoint": source["checkpoint"],
                                                   "label": result.summary.label}, started, source, **fields)
        return folder / name

    folders = []
    for label in labels:
        folders.append(save(f"deletion-{label}", results[label]["deletion"], sources[label]))
        if "sparsity" not in skip:
            folders.append(save(f"sparsity-{label}", results[label]["sparsity"], sources[label]))
    if "occlusion" not in skip:
        combined = combine_occlusion([results[label]["occlusion"] for label in labels])
        folders.append(save("occlusion", combined, sources[labels[0]], checkpoints=[sources[l] for l in labels]))
    groups = one_group_each([(label, c.config.to_dict(), c.provenance) for label, c in loaded.items()])
    write_study_tables(folder, results, setups, groups, n_boot, seed)
    groups.to_csv(folder / GROUPS_FILE, index=False)
    if stores is not None:
        stores.remove()  # every table is written: nothing left to resume
    return Comparison(folders, len(setups[labels[0]].indices), bundles, passes.get("resumed_images", 0))


def check_skip(skip: Sequence[Any]) -> tuple[str, ...]:
    """The evaluations to leave out, by name (choices of an Enum by value); others raise ConfigError."""
    names = tuple(dict.fromkeys(getattr(s, "value", s) for s in skip or ()))
    unknown = [n for n in names if n not in SKIPPABLE]
    if unknown:
        raise ConfigError(f"--skip takes {' or '.join(SKIPPABLE)}, got {', '.join(unknown)}")
    return names


def check_same_classes(checkpoints: Sequence[Path], loaded: Sequence[Any] | None = None) -> None:
    """Compared models must name the same classes in the same order (they are scored on the same
    images and labels); checked before any work, naming the first difference.

    ``loaded``: the checkpoints already loaded (:func:`~ersm_core.checkpoint.load_checkpoint`), in order,
    so that they are not read again."""
    from ersm_core.checkpoint import load_checkpoint
    from ersm_core.data.base import first_class_difference

    names_of = [c.class_names for c in loaded] if loaded is not None else None
    first = names_of[0] if names_of else load_checkpoint(checkpoints[0]).class_names
    for position, path in enumerate(checkpoints[1:], start=1):
        names = names_of[position] if names_of else load_checkpoint(path).class_names
        if list(names) != list(first):
            where = first_class_difference(first, names, str(checkpoints[0]), str(path))
            raise ConfigError(
                f"compare needs checkpoints trained on the same classes: {checkpoints[0]} has {len(first)} and {path} "
                f"has {len(names)} ({where}); compare models of one dataset")
