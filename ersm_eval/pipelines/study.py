"""The study pipeline: many checkpoints on the same images, grouped by training seed.

Every checkpoint is evaluated (deletion at feature level, sparsity, occlusion) on one
split and one image subset. Checkpoints whose frozen backbones are equal share one
backbone pass per image (:mod:`ersm_eval.pipelines.study_bundle`); others run on their
own. The study folder holds:

* ``groups.csv``: the grouping (:func:`ersm_eval.studies.group_checkpoints`);
* ``members.csv``, ``group_summary.csv``, ``group_differences.csv``
  (:func:`ersm_eval.studies.study_tables`) from every checkpoint's per-image values
  (:func:`ersm_eval.studies.per_image.per_image_values`);
* ``study.json``: the options, the members, which ones shared a backbone, the passes;
* ``runs/<checkpoint>/{deletion,sparsity,occlusion}``: each checkpoint's own result folders.

The caller may add files (reports, paper tables) through ``after``, called with the
temporary folder before it becomes ``out``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.common import ProgressBar, join_group, no_progress, save_result

__all__ = ["StudyRun", "run_study", "study", "study_labels", "evaluate_members", "write_study_tables", "STUDY_JSON",
           "RUNS_DIR", "STUDY_OCCLUSION", "check_shared_pass", "eval_setups"]

STUDY_JSON = "study.json"
RUNS_DIR = "runs"


@dataclass
class StudyRun:
    """What :func:`run_study` leaves: the folder, the groups and the three study tables."""

    out: Path
    groups: pd.DataFrame
    tables: Any  # ersm_eval.studies.StudyTables
    run_folders: dict[str, list[Path]] = field(default_factory=dict)  # checkpoint -> its result folders
    bundles: list[list[str]] = field(default_factory=list)  # checkpoints that shared one backbone pass
    n_images: int = 0  # images every checkpoint was evaluated on
    resumed_images: int = 0  # images an interrupted study had finished (--resume), counted once per bundle


def study_labels(checkpoints: Sequence[Path]) -> list[str]:
    """Each checkpoint's name in the tables: its file name stem; repeated stems raise ConfigError."""
    stems = [Path(c).stem for c in checkpoints]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ConfigError(f"checkpoints must have distinct file names to be told apart in the tables; repeated: "
                          f"{', '.join(repeated)}")
    return stems


def check_shared_pass(what: str, deletion: DeletionSettings) -> None:
    """Refuse (ConfigError) what cannot share each image's backbone pass between ``what``'s (a study's, a
    comparison's) checkpoints: a start under torchrun (they run in one process) or deletion at input level."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(f"{what} runs in one process (its checkpoints share each backbone pass); run it without "
                          "torchrun")
    if deletion.level != "feature":
        raise ConfigError(f"{what} evaluates deletion at feature level (one backbone pass per image)")


def _groups(loaded: dict[str, Any], group_by: Sequence[str] | None) -> pd.DataFrame:
    from ersm_eval.studies import group_checkpoints

    try:
        return group_checkpoints([(label, c.config.to_dict(), c.provenance) for label, c in loaded.items()], group_by)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def eval_setups(loaded: dict[str, Any], dataset: str, split: str, data_root: Path | None, limit: int | None, device: str,
            subset_seed: int) -> dict[str, Any]:
    """Every checkpoint's :class:`~ersm_eval.context.EvalSetup`, each checkpoint read once and each
    dataset built once per image transform."""
    import torch

    from ersm_core.data import model_transform
    from ersm_core.data.subset import subset_record
    from ersm_eval.context import EvalSetup, load_eval_dataset

    built: dict[str, tuple[Any, list[int]]] = {}
    setups = {}
    for label, checkpoint in loaded.items():
        checkpoint.model.to(device).eval()
        key = repr(model_transform(checkpoint.model))
        if key not in built:
            built[key] = load_eval_dataset(checkpoint, dataset, split, data_root, limit, None, subset_seed)
        data, indices = built[key]
        setups[label] = EvalSetup(checkpoint, data, indices, torch.device(device), dataset, {},
                                  subset=subset_record(indices, limit, subset_seed, len(data)))
    return setups


def run_study(
    checkpoints: Sequence[Path],
    dataset: str,
    deletion: DeletionSettings,
    occlusion: OcclusionSettings,
    *,
    out: Path,
    overwrite: bool = False,
    group_by: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    split: str = "test",
    data_root: Path | None = None,
    limit: int | None = None,
    subset_seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    n_boot: int = 2000,
    seed: int = 0,
    progress: ProgressBar = no_progress,
    after: Callable[[Path, "StudyRun"], None] | None = None,
    options: dict[str, Any] | None = None,
    resume: bool = False,
) -> StudyRun:
    """Evaluate every checkpoint on the same images and write the study folder ``out``.

    Args:
        checkpoints: the checkpoint files (trained on the same classes, distinct file names).
        dataset: a registered dataset name.
        deletion: deletion settings (feature level; the label is each checkpoint's).
        occlusion: occlusion settings.
        out: the study folder (written under a temporary name, renamed when complete).
        overwrite: replace an existing folder ersm-eval wrote.
        group_by: fields that define a group (default: everything but the seed).
        skip: evaluations to leave out (occlusion, sparsity).
        n_boot: replicates of the two-level bootstrap.
        seed: the study bootstrap's seed.
        progress: one bar over the whole study (every image of every backbone bundle).
        after: called with (temporary folder, the run) before the rename (reports, paper tables).
        options: the command's options, recorded in study.json and every summary.json.
        resume: go on from the images an interrupted study writing ``out`` finished (its records
            are kept in ``.<out>.resume/`` while a study runs, see
            :mod:`ersm_eval.pipelines.study_resume`); the tables equal an uninterrupted study's.
        split, data_root, limit, subset_seed, device, batch_size, workers: as for
            :func:`~ersm_eval.pipelines.run_deletion`.

    Raises:
        ConfigError: missing or repeated checkpoints, different classes, a bad ``group_by``
            field or output folder, a resume of a study with other checkpoints or settings: before
            any evaluation.
    """
    from ersm_eval.output import check_output_dir, output_folder
    from ersm_eval.pipelines.compare import check_same_classes, check_skip
    from ersm_eval.pipelines.study_bundle import EVALUATIONS
    from ersm_eval.pipelines.study_resume import StudyStores

    checkpoints = [Path(c) for c in checkpoints]
    check_shared_pass("a study", deletion)
    if not checkpoints:
        raise ConfigError("a study needs at least one checkpoint")
    for path in checkpoints:
        if not path.is_file():
            raise ConfigError(f"checkpoint not found: {path}")
    labels = study_labels(checkpoints)
    skip = check_skip(skip)
    inputs = [*checkpoints, data_root]
    check_output_dir(out, overwrite, inputs=inputs)
    from ersm_core.checkpoint import load_checkpoint

    loaded = {label: load_checkpoint(path) for label, path in zip(labels, checkpoints)}  # read once, weights only
    check_same_classes(checkpoints, list(loaded.values()))
    groups = _groups(loaded, group_by)
    started = time.time()
    setups = eval_setups(loaded, dataset, split, data_root, limit, join_group(device), subset_seed)
    stores = StudyStores(Path(out), setups, dataset, split, deletion, occlusion,
                         [k for k in EVALUATIONS if k not in skip], batch_size, resume)  # refusals before any work
    with output_folder(out, overwrite, inputs=inputs) as tmp:
        run = _evaluate(tmp, checkpoints, setups, stores, groups, dataset, deletion, occlusion, skip, split,
                        batch_size, workers, n_boot, seed, progress, dict(options or {}), started)
        if after is not None:
            after(tmp, run)
    stores.remove()  # the study folder is written: nothing left to resume
    run.out = Path(out)
    run.run_folders = {k: [Path(out) / p.relative_to(tmp) for p in v] for k, v in run.run_folders.items()}
    return run


# The lighter occlusion grid of studies and comparisons (10 passes per image: the clean image, then random
# squares, the object and the background each covering 20%, 40% and 60%, gray, one seed).
STUDY_OCCLUSION = OcclusionSettings(fills=("gray",), patterns=("random_squares", "object", "background"),
                                    severities=(0.2, 0.4, 0.6), seeds=(0,))


def study(checkpoints: Sequence[Path], dataset: str, out: Path, *, deletion: DeletionSettings | None = None,
          occlusion: OcclusionSettings | None = None, report: bool = True, **options: Any) -> StudyRun:
    """A study as ``ersm-eval study`` runs it: every checkpoint on the same images, grouped by seed.

    ``ersm_eval.study(paths, "cub", "runs/study")`` writes the study folder with its tables
    (groups.csv, members.csv, group_summary.csv, group_differences.csv), each checkpoint's
    result folders and, with ``report``, each checkpoint's report.html, study.html and the paper
    tables. ``deletion`` defaults to every ranking at feature level, ``occlusion`` to
    :data:`STUDY_OCCLUSION`; other keyword options are :func:`run_study`'s (``group_by``, ``skip``,
    ``limit``, ``n_boot``, ``resume``, ...).
    """
    after = options.pop("after", None)
    if report:
        import warnings

        from reports.study_page import write_study_outputs

        def after(tmp: Path, run: StudyRun, _then=after) -> None:
            for problem in write_study_outputs(tmp, run.run_folders):
                warnings.warn(problem, RuntimeWarning, stacklevel=3)
            if _then is not None:
                _then(tmp, run)
    return run_study(checkpoints, dataset, deletion or DeletionSettings(), occlusion or STUDY_OCCLUSION, out=Path(out),
                     after=after, **options)


def _evaluate(tmp: Path, checkpoints, setups, stores, groups, dataset, deletion, occlusion, skip, split, batch_size,
              workers, n_boot, seed, progress, options, started) -> StudyRun:
    from ersm_eval.studies import GROUPS_FILE

    labels = list(setups)
    results, bundles, passes = evaluate_members(setups, deletion, occlusion, skip, batch_size, workers, progress,
                                                stores=stores)
    run_folders = {}
    for label, by_kind in results.items():
        run_folders[label] = []
        source = {"label": label, **setups[label].describe()}
        for kind, result in by_kind.items():
            folder = tmp / RUNS_DIR / label / kind
            save_result(result, folder, False, {**options, "checkpoint": source["checkpoint"], "label": label},
                        started, source)
            run_folders[label].append(folder)
    tables = write_study_tables(tmp, results, setups, groups, n_boot, seed)
    groups.to_csv(tmp / GROUPS_FILE, index=False)
    record = {"command": "study", "dataset": dataset, "split": split, "n_images": len(setups[labels[0]].indices),
              "checkpoints": {label: str(c) for label, c in zip(labels, checkpoints)},
              "bundles": bundles, **passes, "n_boot": n_boot, "seed": seed,
              "options": options, "run_seconds": round(time.time() - started, 3)}
    (tmp / STUDY_JSON).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return StudyRun(tmp, groups, tables, run_folders, bundles, record["n_images"], passes.get("resumed_images", 0))


def evaluate_members(setups: dict[str, Any], deletion: DeletionSettings, occlusion: OcclusionSettings,
                     skip: Sequence[str], batch_size: int, workers: int, progress: ProgressBar = no_progress,
                     description: str = "study", stores: Any = None,
                     ) -> tuple[dict[str, dict[str, Any]], list[list[str]], dict[str, int]]:
    """Every evaluation (deletion, sparsity, occlusion but ``skip``) of every checkpoint, one backbone pass
    per image for each bundle of checkpoints whose frozen backbones are equal.

    Args:
        setups: label -> :class:`~ersm_eval.context.EvalSetup` (same images for all).
        deletion, occlusion: the settings (deletion at feature level; labelled per checkpoint).
        skip: evaluations left out.
        progress: one bar over every image of every bundle (the images still to evaluate), named
            ``description``.
        stores: a :class:`~ersm_eval.pipelines.study_resume.StudyStores` keeping every evaluation's
            finished records; each bundle goes on from the images all its stores finished.

    Returns:
        ({label: {evaluation: EvaluationResult}} in the setups' order, the bundles' labels,
        {"backbone_passes": ..., "shared_hits": ...}, with ``stores`` also "resumed_images": the
        images resumed, counted once per bundle as the progress bar counts them).
    """
    from ersm_eval.pipelines.study_bundle import evaluate_bundle
    from ersm_eval.shared_features import backbone_key

    bundles: dict[str, list[str]] = {}
    for label, setup in setups.items():
        bundles.setdefault(backbone_key(setup.model, asdict(setup.dataset.transform)), []).append(label)
    done = {key: (stores.settle(members) if stores is not None else set()) for key, members in bundles.items()}
    total = sum(len(setups[members[0]].indices) - len(done[key]) for key, members in bundles.items())
    results, passes = {}, {"backbone_passes": 0, "shared_hits": 0}
    with progress(total, f"{description} ({len(setups)} checkpoint{'s' if len(setups) > 1 else ''}, {len(bundles)} "
                         f"backbone pass{'es' if len(bundles) > 1 else ''} per image)") as advance:
        for key, members in bundles.items():
            got, counts = evaluate_bundle([setups[m] for m in members], members, deletion, occlusion, skip,
                                          batch_size, workers, advance,
                                          stores=stores.stores if stores is not None else None, done=done[key])
            results.update(got)
            passes = {k: passes[k] + counts[k] for k in passes}
    if stores is not None:
        passes["resumed_images"] = sum(len(d) for d in done.values())
    return {label: results[label] for label in setups}, list(bundles.values()), passes


def write_study_tables(folder: Path, results: dict[str, dict[str, Any]], setups: dict[str, Any], groups: pd.DataFrame,
                       n_boot: int, seed: int) -> Any:
    """members.csv, group_summary.csv and group_differences.csv of ``results`` grouped by ``groups``,
    written into ``folder``; returns the :class:`~ersm_eval.studies.StudyTables`."""
    from ersm_eval.studies import study_tables
    from ersm_eval.studies.per_image import per_image_values

    per_image = {label: per_image_values(results[label]["deletion"], results[label].get("sparsity"))
                 for label in results}
    chance = {label: 1.0 / setups[label].checkpoint.config.num_classes for label in results}
    tables = study_tables(_common_metrics(per_image, groups), groups, chance, n_boot=n_boot, seed=seed)
    for name, table in tables.as_files().items():
        table.to_csv(folder / name, index=False)
    return tables


def _common_metrics(per_image: dict[str, dict[str, Any]], groups: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Within each group, only the metrics every member has (a ranking one seed's model skipped is left
    out for the whole group, so that its seeds are compared on the same figures)."""
    out = {}
    for _, members in groups.groupby("group", sort=False)["checkpoint"]:
        names = [str(m) for m in members]
        common = set.intersection(*(set(per_image[m]) for m in names))
        out.update({m: {k: v for k, v in per_image[m].items() if k in common} for m in names})
    return out
