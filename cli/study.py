"""``ersm-eval study``: many checkpoints on the same images, grouped by training seed.

The command parses options and calls :func:`ersm_eval.pipelines.study.run_study`
(deletion, sparsity and occlusion of every checkpoint, one backbone pass per image for
checkpoints sharing a frozen backbone), then writes each checkpoint's report, the
study page and the paper tables into the study folder before it is renamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.app import app
from cli.common import (
    BatchSize, Checkpoints, DataRoot, DatasetName, Device, Limit, Out, Overwrite, Quiet, Resume, Split, SplitOpt,
    SubsetSeed, Workers, bars, console, err_console, handle_errors, option_values, parse_int_list, parse_name_list,
    print_study_resumed,
)
from cli.compare import Skippable
from cli.deletion import Fill, Level, deletion_settings
from cli.occlusion import parse_float_list

__all__ = ["study", "write_study_reports"]


def write_study_reports(tmp: Path, run) -> None:
    """Each checkpoint's report.html, study.html and the paper tables; a page that cannot be built is a
    warning (the tables are the result)."""
    from reports.study_page import write_study_outputs

    for problem in write_study_outputs(tmp, run.run_folders):
        err_console.print(f"[yellow]Warning:[/] {problem}", highlight=False)


@app.command()
@handle_errors
def study(
    checkpoints: Checkpoints,
    dataset: DatasetName,
    out: Out = Path("runs/study"),
    group_by: Annotated[Optional[str], typer.Option(
        "--group-by", help="Comma-separated fields that define a group (default: every recorded field but the seed).",
    )] = None,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    rankings: Annotated[str, typer.Option("--rankings", "-r", help="Deletion: comma-separated rankings.")]
    = "energy,unary,magnitude,cam,center,border,random",
    seeds: Annotated[str, typer.Option("--seeds", help="Deletion: seeds of the random ranking.")] = "0,1,2,3,4",
    steps: Annotated[str, typer.Option("--steps", help="Deletion: 'all' or a count of k values.")] = "all",
    occlusion_fills: Annotated[str, typer.Option("--occlusion-fills", help="Occlusion: fills.")] = "gray",
    occlusion_patterns: Annotated[str, typer.Option("--occlusion-patterns", help="Occlusion: patterns.")]
    = "random_squares,object,background",
    occlusion_severities: Annotated[str, typer.Option("--occlusion-severities", help="Occlusion: area fractions.")]
    = "0.2,0.4,0.6",
    occlusion_seeds: Annotated[str, typer.Option("--occlusion-seeds", help="Occlusion: occluder seeds.")] = "0",
    skip: Annotated[Optional[list[Skippable]], typer.Option("--skip", help="Leave out occlusion or sparsity.")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Replicates of the two-level bootstrap.")] = 2000,
    boot_seed: Annotated[int, typer.Option("--boot-seed", help="Seed of the study's bootstrap.")] = 0,
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    overwrite: Overwrite = False,
    resume: Resume = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate many checkpoints on the same images and report each group of seeds: mean ± std, two-level
    intervals, verdicts with how many seeds agree, differences between groups, paper tables and study.html."""
    from ersm_eval.occlusion import OcclusionSettings
    from ersm_eval.pipelines.study import run_study

    options = option_values(dict(locals()))
    deletion = deletion_settings(rankings, seeds, steps, False, False, Level.feature, Fill.mean, False, "")
    occlusion = OcclusionSettings(
        fills=tuple(parse_name_list(occlusion_fills, "--occlusion-fills")),
        patterns=tuple(parse_name_list(occlusion_patterns, "--occlusion-patterns")),
        severities=tuple(parse_float_list(occlusion_severities, "--occlusion-severities")),
        seeds=tuple(parse_int_list(occlusion_seeds, "--occlusion-seeds")))
    by = parse_name_list(group_by, "--group-by") if group_by else None
    run = run_study(checkpoints, dataset, deletion, occlusion, out=out, overwrite=overwrite, group_by=by,
                    skip=tuple(skip or ()), split=split.value, data_root=data_root, limit=limit,
                    subset_seed=subset_seed, device=device, batch_size=batch_size, workers=workers, n_boot=n_boot,
                    seed=boot_seed, progress=bars(quiet), after=write_study_reports, options=options, resume=resume)
    print_study_resumed(run)
    for name, rows in run.groups.groupby("group", sort=False):
        console.print(f"{name}: {', '.join(map(str, rows['checkpoint']))}", highlight=False)
    console.print(f"Study: {run.out / 'study.html'}", highlight=False)
