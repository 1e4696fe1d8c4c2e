"""``ersm-eval compare``: deletion, occlusion and sparsity for several checkpoints on the same
images, one comparative report and a paper-style table.

The command calls the evaluation API (evaluate_deletion, evaluate_occlusion,
mask_statistics) for each checkpoint in turn and saves each result into a sub-folder of a
temporary folder that becomes ``--out`` only when everything is written. It takes
the evaluators' own options (rankings, seeds, occlusion fills, patterns and
severities) and ``--skip occlusion`` / ``--skip sparsity``.

Cost by default, in backbone passes per image per model: deletion 1 (feature level,
every k from one pass), sparsity 1, occlusion 10 = the clean image + 3 patterns
(random squares, the object, the background) × 3 severities (0.2, 0.4, 0.6) × one
gray fill × one seed; 12 in all. On a dataset without object masks or boxes the
object and background patterns are skipped (occlusion 4, 6 in all). The
``occlusion`` command's own default grid (5 patterns × 6 severities, 31 passes)
is there for a full stress test.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.app import app
from cli.common import (
    BatchSize, Checkpoints, DataRoot, DatasetName, Device, Limit, Out, Overwrite, Quiet, Split, SplitOpt, SubsetSeed,
    Workers, console, dataset_batches, handle_errors, option_values, parse_int_list, parse_name_list, progress_bar,
    run_device, save_run,
)
from cli.deletion import Fill, Level, deletion_settings
from cli.occlusion import parse_float_list
from ersm_core.errors import ConfigError

__all__ = ["compare", "run_comparison", "compare_into", "SKIPPABLE", "Skippable"]


def _labels(checkpoints: list[Path]) -> list[str]:
    stems = [Path(c).stem for c in checkpoints]
    if len(set(stems)) < len(stems):
        raise ConfigError(f"checkpoints must have distinct file names to be told apart in the tables, got {stems}")
    return stems


def compare_into(
    tmp: Path,
    checkpoints: list[Path],
    dataset: str,
    data_root: Optional[Path] = None,
    split: Split = Split.test,
    seeds: str = "0,1,2,3,4",
    occlusion_seeds: str = "0",
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    limit: Optional[int] = None,
    quiet: bool = False,
    deletion_steps: str = "all",
    occlusion_fills: str = "gray",
    occlusion_severities: str = "0.2,0.4,0.6",
    claims_for: Optional[dict[str, Any]] = None,
    title: Optional[str] = None,
    rankings: str = ",".join(("energy", "unary", "magnitude", "cam", "center", "border", "random")),
    occlusion_patterns: str = "random_squares,object,background",
    subset_seed: int = 0,
    skip: tuple[str, ...] = (),
) -> Path:
    """Run the three evaluations (the API, in a loop) and write the comparative report into the folder ``tmp``.

    ``tmp`` is the temporary folder of an :func:`~ersm_eval.output.output_folder`;
    :func:`run_comparison` is the atomic wrapper. ``claims_for`` = {"baseline": label, "ersm": label, "init_keep": float, "spurious": float}
    adds the paper's claims section (see :mod:`ersm_eval.claims`).
    """
    from ersm_eval.api import combine_occlusion, evaluate_deletion, evaluate_occlusion, mask_statistics
    from ersm_eval.occlusion import OcclusionConfig

    options = option_values({k: v for k, v in locals().items() if k not in ("tmp", "claims_for")})
    labels, skip = _labels(checkpoints), _check_skip(skip)
    _check_same_classes(checkpoints)
    run = _Runner(dataset, split.value, data_root, limit, run_device(device), subset_seed, batch_size, workers, quiet,
                  {**options, "steps": deletion_steps})
    occlusion_config = OcclusionConfig(
        fills=tuple(parse_name_list(occlusion_fills, "--occlusion-fills")),
        patterns=tuple(parse_name_list(occlusion_patterns, "--occlusion-patterns")),
        severities=tuple(parse_float_list(occlusion_severities, "--occlusion-severities")),
        seeds=tuple(parse_int_list(occlusion_seeds, "--occlusion-seeds")))
    folders, occluded = [], []
    for ckpt, label in zip(checkpoints, labels):
        settings = deletion_settings(rankings, seeds, deletion_steps, False, False, Level.feature, Fill.mean, False, label)
        folders.append(run(tmp / f"deletion-{label}", ckpt, label, True, lambda model, batches, names: evaluate_deletion(
            model, batches, settings=settings, class_names=names, verify=False)))
        if "occlusion" not in skip:
            occluded.append(run(None, ckpt, label, False, lambda model, batches, names: evaluate_occlusion(
                model, batches, settings=occlusion_config, label=label, class_names=names, batch_size=batch_size,
                verify=False)))
        if "sparsity" not in skip:
            folders.append(run(tmp / f"sparsity-{label}", ckpt, label, False, lambda model, batches, names: mask_statistics(
                model, batches, label=label, class_names=names, verify=False)))
    if occluded:
        folders.append(run.save(tmp / "occlusion", combine_occlusion([r for r, _ in occluded]), occluded[0][1],
                                checkpoints=[source for _, source in occluded]))
    return _write_report(tmp, folders, claims_for, title or f"ERSM comparison on {dataset}: {', '.join(labels)}")


def _check_same_classes(checkpoints: list[Path]) -> None:
    """Compared models must name the same classes in the same order (they are scored on the same
    images and labels); checked before any work, naming the first difference."""
    from ersm_core.checkpoint import load_checkpoint
    from ersm_core.data.base import first_class_difference

    first = load_checkpoint(checkpoints[0]).class_names
    for path in checkpoints[1:]:
        names = load_checkpoint(path).class_names
        if list(names) != list(first):
            where = first_class_difference(first, names, str(checkpoints[0]), str(path))
            raise ConfigError(
                f"compare needs checkpoints trained on the same classes: {checkpoints[0]} has {len(first)} and {path} "
                f"has {len(names)} ({where}); compare models of one dataset")


class _Runner:
    """One evaluation of one checkpoint on the comparison's images, saved into a sub-folder."""

    def __init__(self, dataset, split, data_root, limit, device, subset_seed, batch_size, workers, quiet, options):
        self.where = (dataset, split, data_root, limit, device)
        self.subset_seed, self.batch_size, self.workers, self.quiet = subset_seed, batch_size, workers, quiet
        self.options = options

    def __call__(self, folder: Path | None, checkpoint: Path, label: str, features: bool, evaluate) -> Any:
        """Evaluate; save into ``folder`` and return it, or (folder None) return (result, provenance)."""
        from ersm_eval.context import prepare

        setup = prepare(checkpoint, *self.where, subset_seed=self.subset_seed)
        with progress_bar(len(setup.indices), f"{folder.name if folder else 'occlusion'} ({label})",
                          enabled=not self.quiet) as advance:
            batches = dataset_batches(setup, self.batch_size, self.workers, advance, False, [], features=features)
            result = evaluate(setup.model, batches, setup.checkpoint.class_names)
        source = {"label": label, **setup.describe()}
        return (result, source) if folder is None else self.save(folder, result, source)

    def save(self, folder: Path, result: Any, source: dict, **fields: Any) -> Path:
        options = {**self.options, "checkpoint": source["checkpoint"], "label": result.summary.label}
        save_run(result, folder, False, True, options, time.time() - result.summary.run_seconds, source, **fields)
        return folder


def _write_report(tmp: Path, folders: list[Path], claims_for: dict[str, Any] | None, title: str) -> Path:
    """The comparative report.html (with the claims section for ``claims_for``) and the paper table."""
    from ersm_eval.claims import evaluate_claims
    from reports import build_report, load_run, paper_table, write_paper_table
    from reports.combine import combine_by_checkpoint

    runs = combine_by_checkpoint([load_run(f) for f in folders])
    claims = None
    if claims_for:
        by_label = {r.label: r.tables for r in runs}
        occ = by_label.get(claims_for["ersm"], {}).get("occlusion_summary.csv")
        claims = evaluate_claims(
            by_label[claims_for["baseline"]], by_label[claims_for["ersm"]], occ,
            baseline_label=claims_for["baseline"], ersm_label=claims_for["ersm"],
            init_keep=float(claims_for.get("init_keep", 0.9)), spurious=float(claims_for.get("spurious", 0.0)),
        )
    # CSV links are relative to report.html, so they stay valid when tmp becomes out
    build_report(runs, tmp / "report.html", figures_dir=tmp / "figures", claims=claims, title=title)
    write_paper_table(paper_table(runs), tmp)
    return tmp / "report.html"


SKIPPABLE = ("occlusion", "sparsity")  # deletion is the comparison's core and always runs


def _check_skip(skip) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(getattr(s, "value", s) for s in skip or ()))
    unknown = [n for n in names if n not in SKIPPABLE]
    if unknown:
        raise ConfigError(f"--skip takes {' or '.join(SKIPPABLE)}, got {', '.join(unknown)}")
    return names


class Skippable(str, Enum):
    occlusion = "occlusion"
    sparsity = "sparsity"


def run_comparison(checkpoints: list[Path], dataset: str, out: Path, overwrite: bool = False, **options: Any) -> Path:
    """:func:`compare_into` a temporary folder that becomes ``out`` once complete; returns the report path."""
    from ersm_eval.output import check_output_dir, output_folder

    for ckpt in checkpoints:
        if not Path(ckpt).is_file():
            raise ConfigError(f"checkpoint not found: {ckpt}")
    _labels(checkpoints)
    check_output_dir(out, overwrite, inputs=[*checkpoints, options.get("data_root")])
    with output_folder(out, overwrite) as tmp:
        compare_into(tmp, checkpoints, dataset, **options)
    return out / "report.html"


@app.command()
@handle_errors
def compare(
    checkpoints: Checkpoints,
    dataset: DatasetName,
    out: Out = Path("runs/compare"),
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    rankings: Annotated[str, typer.Option(
        "--rankings", "-r", help="Deletion: comma-separated rankings (see `ersm-eval deletion --help`).",
    )] = "energy,unary,magnitude,cam,center,border,random",
    seeds: Annotated[str, typer.Option("--seeds", help="Deletion: seeds of the random ranking, comma-separated.")] = "0,1,2,3,4",
    steps: Annotated[str, typer.Option(
        "--steps", help="Deletion: 'all' (k = 0..N−1) or a count of evenly spaced k values.",
    )] = "all",
    occlusion_fills: Annotated[str, typer.Option(
        "--occlusion-fills", help="Occlusion: comma-separated fills (gray, black, noise, blur).",
    )] = "gray",
    occlusion_patterns: Annotated[str, typer.Option(
        "--occlusion-patterns", help="Occlusion: comma-separated patterns (random_squares, grid, center, object, background). "
        "The default grid costs 10 passes per image (see the command's description).",
    )] = "random_squares,object,background",
    occlusion_severities: Annotated[str, typer.Option(
        "--occlusion-severities", help="Occlusion: comma-separated area fractions (0 is always added).",
    )] = "0.2,0.4,0.6",
    occlusion_seeds: Annotated[str, typer.Option(
        "--occlusion-seeds", help="Occlusion: seeds of the random occluders, comma-separated (each multiplies the seeded patterns' cost).",
    )] = "0",
    skip: Annotated[Optional[list[Skippable]], typer.Option(
        "--skip", help="Leave out an evaluation: occlusion or sparsity (repeat for both). Deletion always runs.",
    )] = None,
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Deletion, occlusion and sparsity for every checkpoint on the same images, with one comparative report.

    By default about 12 backbone passes per image and model: deletion 1, sparsity 1, occlusion 10 (the clean
    image, then random squares, the object and the background each covering 20%, 40% and 60%).
    """
    path = run_comparison(checkpoints, dataset, out, overwrite, data_root=data_root, split=split, rankings=rankings,
                          seeds=seeds, deletion_steps=steps, occlusion_fills=occlusion_fills,
                          occlusion_patterns=occlusion_patterns, occlusion_severities=occlusion_severities,
                          occlusion_seeds=occlusion_seeds, skip=tuple(skip or ()), batch_size=batch_size,
                          workers=workers, device=device, limit=limit, subset_seed=subset_seed, quiet=quiet)
    console.print(f"Report: {path}", highlight=False)
