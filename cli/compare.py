"""``ersm-eval compare``: deletion, occlusion and sparsity for several checkpoints on the same
images, one comparative report and a paper-style table.

A comparison is a study whose groups hold one checkpoint each. The command calls
:func:`ersm_eval.pipelines.compare_evaluations`, which evaluates every checkpoint with the
study's evaluation (checkpoints sharing a frozen backbone share its pass), adds the
randomization check of each checkpoint's maps, saves each result into a sub-folder of a
temporary folder that becomes ``--out`` only when everything is written, and writes the study
tables beside them (``group_differences.csv``: every pair of checkpoints on the same images).
It takes the evaluators' own options (rankings, seeds, occlusion fills, patterns and
severities) and ``--skip occlusion`` / ``--skip sparsity``.

Cost by default, in backbone passes per image per model: 1 for deletion (feature
level, every k from one pass), sparsity and occlusion's clean image together; 9 for
occlusion's 3 patterns (random squares, the object, the background) × 3 severities
(0.2, 0.4, 0.6) × one gray fill × one seed; 4 for the randomization check (the model
and three re-initialized copies); 14 in all, fewer for checkpoints sharing a frozen
backbone. On a dataset without object masks or boxes the object and background
patterns are skipped (occlusion 3, 8 in all). The ``occlusion`` command's own
default grid (5 patterns × 6 severities, 31 passes) is there for a full stress test.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.app import app
from cli.common import (
    BatchSize, Checkpoints, DataRoot, DatasetName, Device, Limit, Out, Overwrite, Quiet, Split, SplitOpt, SubsetSeed,
    Randomization, Resume, Workers, bars, console, handle_errors, option_values, parse_int_list, parse_name_list,
    print_study_resumed,
)
from cli.deletion import Fill, Level, deletion_settings
from cli.occlusion import parse_float_list
from ersm_core.errors import ConfigError

__all__ = ["compare", "run_comparison", "compare_into", "Skippable"]


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
    randomization: bool = True,
    n_boot: int = 2000,
    boot_seed: int = 0,
    resume_out: Optional[Path] = None,
    resume: bool = False,
) -> Any:
    """Run the three evaluations and write the comparative report into the folder ``tmp``; returns the
    :class:`~ersm_eval.pipelines.Comparison`.

    ``tmp`` is the temporary folder of an :func:`~ersm_eval.output.output_folder`;
    :func:`run_comparison` is the atomic wrapper. ``resume_out`` (the folder ``tmp`` becomes) keeps the
    finished images' records beside it, and ``resume`` goes on from them. ``claims_for`` = {"baseline": label, "ersm": label, "init_keep": float, "spurious": float}
    adds the paper's claims section (see :mod:`ersm_eval.claims`).
    """
    from ersm_eval.occlusion import OcclusionSettings
    from ersm_eval.pipelines import compare_evaluations

    options = option_values({k: v for k, v in locals().items() if k not in ("tmp", "claims_for", "resume_out")})
    labels = _labels(checkpoints)
    deletion = deletion_settings(rankings, seeds, deletion_steps, False, False, Level.feature, Fill.mean, False, "")
    occlusion = OcclusionSettings(
        fills=tuple(parse_name_list(occlusion_fills, "--occlusion-fills")),
        patterns=tuple(parse_name_list(occlusion_patterns, "--occlusion-patterns")),
        severities=tuple(parse_float_list(occlusion_severities, "--occlusion-severities")),
        seeds=tuple(parse_int_list(occlusion_seeds, "--occlusion-seeds")))
    comparison = compare_evaluations(
        tmp, checkpoints, labels, dataset, deletion, occlusion, skip=tuple(skip or ()), split=split.value,
        data_root=data_root, limit=limit, subset_seed=subset_seed, device=device, batch_size=batch_size,
        workers=workers, progress=bars(quiet), options={**options, "steps": deletion_steps},
        randomization=randomization, n_boot=n_boot, seed=boot_seed, resume_out=resume_out, resume=resume,
    )
    _write_report(tmp, comparison.folders, claims_for, title or f"ERSM comparison on {dataset}: {', '.join(labels)}")
    return comparison


def _write_report(tmp: Path, folders: list[Path], claims_for: dict[str, Any] | None, title: str) -> Path:
    """The comparative report.html (with the claims section for ``claims_for`` and the differences between
    models) and the paper table."""
    import pandas as pd

    from ersm_eval.claims import evaluate_claims
    from ersm_eval.studies import DIFFERENCES_FILE
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
    differences = pd.read_csv(tmp / DIFFERENCES_FILE) if (tmp / DIFFERENCES_FILE).is_file() else None
    build_report(runs, tmp / "report.html", figures_dir=tmp / "figures", claims=claims, title=title,
                 differences=differences)
    write_paper_table(paper_table(runs), tmp)
    return tmp / "report.html"


class Skippable(str, Enum):
    occlusion = "occlusion"
    sparsity = "sparsity"


def run_comparison(checkpoints: list[Path], dataset: str, out: Path, overwrite: bool = False, **options: Any) -> Any:
    """:func:`compare_into` a temporary folder that becomes ``out`` once complete, keeping the finished images'
    records beside ``out`` until then (``resume=True`` goes on from them); returns the
    :class:`~ersm_eval.pipelines.Comparison`."""
    from ersm_eval.output import check_output_dir, output_folder

    for ckpt in checkpoints:
        if not Path(ckpt).is_file():
            raise ConfigError(f"checkpoint not found: {ckpt}")
    _labels(checkpoints)
    check_output_dir(out, overwrite, inputs=[*checkpoints, options.get("data_root")])
    with output_folder(out, overwrite) as tmp:
        return compare_into(tmp, checkpoints, dataset, resume_out=out, **options)


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
    randomization: Randomization = True,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Replicates of the differences' bootstrap.")] = 2000,
    boot_seed: Annotated[int, typer.Option("--boot-seed", help="Seed of the differences' bootstrap.")] = 0,
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Deletion, occlusion and sparsity for every checkpoint on the same images, with one comparative report
    and the paired differences of every two checkpoints (a study whose groups hold one checkpoint each).

    By default about 16 backbone passes per image and model: deletion 1, sparsity 1, occlusion 10 (the clean
    image, then random squares, the object and the background each covering 20%, 40% and 60%), and the
    randomization check of the maps 4 (the model and three re-initialized copies; --no-randomization leaves
    it out). Checkpoints sharing a frozen backbone
    share its passes.
    """
    run = run_comparison(checkpoints, dataset, out, overwrite, data_root=data_root, split=split, rankings=rankings,
                         seeds=seeds, deletion_steps=steps, occlusion_fills=occlusion_fills,
                         occlusion_patterns=occlusion_patterns, occlusion_severities=occlusion_severities,
                         occlusion_seeds=occlusion_seeds, skip=tuple(skip or ()), randomization=randomization,
                         n_boot=n_boot, boot_seed=boot_seed, batch_size=batch_size,
                         workers=workers, device=device, limit=limit, subset_seed=subset_seed, quiet=quiet,
                         resume=resume)
    print_study_resumed(run, "comparison")
    console.print(f"Report: {out / 'report.html'}", highlight=False)
