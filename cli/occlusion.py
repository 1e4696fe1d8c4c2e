"""``ersm-eval occlusion``: input-level occlusion stress test for one or more checkpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.app import app
from cli.common import (
    BatchSize, Checkpoints, DataRoot, DatasetName, Device, Limit, NoReport, Overwrite, Quiet, Resume, Seeds, SkipBadImages, Split,
    SplitOpt, SubsetSeed, Workers, bars, console, err_console, handle_errors, option_values, parse_int_list,
    parse_name_list, print_resumed, print_skipped, write_report,
)
from ersm_core.errors import ConfigError

__all__ = ["occlusion", "parse_float_list", "checkpoint_labels"]


def parse_float_list(text: str, option: str) -> list[float]:
    """'0,0.1,0.2' → [0.0, 0.1, 0.2]; anything else raises ConfigError naming the option."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def checkpoint_labels(checkpoints: list[Path], labels: list[str] | None) -> list[str]:
    """Names for the checkpoint column: --label values (repeated or comma lists), else file stems
    (prefixed by the parent folder where two stems collide)."""
    given = [v.strip() for text in (labels or []) for v in text.split(",") if v.strip()]
    if given:
        if len(given) != len(checkpoints):
            raise ConfigError(f"--label gave {len(given)} names for {len(checkpoints)} checkpoints; give one per checkpoint")
        names = given
    else:
        names = [Path(c).stem for c in checkpoints]
        if len(set(names)) < len(names):
            names = [f"{Path(c).parent.name}/{Path(c).stem}" if names.count(Path(c).stem) > 1 else Path(c).stem
                     for c in checkpoints]
    if len(set(names)) < len(names):
        raise ConfigError(f"checkpoint labels must differ, got {names}; name them with --label")
    return names




def _summary_table(summary, title: str) -> Table:
    from ersm_eval.verdicts import format_number

    table = Table(title=title, title_justify="left")
    for name in ("checkpoint", "fill", "pattern", "acc@0 %", "AUC %", "mean rel. robustness", "min rel. robustness",
                 "AUC diff to first, pts [95% CI]"):
        table.add_column(name, justify="left" if name in ("checkpoint", "fill", "pattern") else "right")
    for row in summary.itertuples(index=False):
        diff = format_number(row.diff_auc_to_first, "points")
        if diff != "n/a":
            diff += f" [{format_number(row.diff_ci_low, 'points')}, {format_number(row.diff_ci_high, 'points')}]"
        table.add_row(row.checkpoint, row.fill, row.pattern, format_number(row.acc0, "percent").rstrip("%"),
                      format_number(row.auc, "percent").rstrip("%"), format_number(row.mean_relative_robustness),
                      format_number(row.min_relative_robustness), diff)
    return table


Fills = Annotated[str, typer.Option(
    "--fills", help="Comma-separated fills: gray (alias mean: the normalization mean), black, noise (seeded), blur.",
)]
Patterns = Annotated[str, typer.Option(
    "--patterns", help="Comma-separated patterns: random_squares, grid, center, object, background. "
    "object/background need object masks or boxes and are skipped (with a note) on datasets without them.",
)]
Severities = Annotated[str, typer.Option(
    "--severities", help="Comma-separated area fractions in [0, 1] (0 is always added). For object/background: "
    "the fraction of the object's / background's pixels covered.",
)]
OcclusionOut = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (written under a temporary name, then renamed). Default: runs/occlusion-<label>.",
)]
Labels = Annotated[Optional[list[str]], typer.Option(
    "--label", help="Names of the checkpoints in the tables (repeat the option or give a comma list, one per "
    "checkpoint). Default: the checkpoint file name stems.",
)]


@app.command()
@handle_errors
def occlusion(
    checkpoints: Checkpoints,
    dataset: DatasetName,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    fills: Fills = "gray",
    patterns: Patterns = "random_squares,grid,center,object,background",
    severities: Severities = "0,0.1,0.2,0.3,0.4,0.5,0.6",
    grid_size: Annotated[int, typer.Option("--grid-size", help="Cells per side of the grid pattern.")] = 4,
    seeds: Seeds = "0",
    batch_size: BatchSize = 64,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    out: OcclusionOut = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    label: Labels = None,
    skip_bad_images: SkipBadImages = False,
    no_report: NoReport = False,
    quiet: Quiet = False,
) -> None:
    """Occlusion stress test: accuracy under seeded occluders (fills × patterns × severities); several checkpoints see identical occluders."""
    from ersm_eval.occlusion import OcclusionSettings
    from ersm_eval.pipelines import run_occlusion

    options, started = option_values(locals()), time.time()
    labels = checkpoint_labels(list(checkpoints), label)
    settings = OcclusionSettings(
        fills=tuple(parse_name_list(fills, "--fills")), patterns=tuple(parse_name_list(patterns, "--patterns")),
        severities=tuple(parse_float_list(severities, "--severities")), seeds=tuple(parse_int_list(seeds, "--seeds")),
        grid_size=grid_size,
    )
    run = run_occlusion(
        list(checkpoints), dataset, settings, labels, out=out, overwrite=overwrite, resume=resume, split=split.value,
        data_root=data_root, limit=limit, subset_seed=subset_seed, device=device, batch_size=batch_size,
        workers=workers, skip_bad_images=skip_bad_images, progress=bars(quiet),
        notify=lambda note: err_console.print(f"[yellow]Note:[/] {note}", highlight=False),
        after=None if no_report else write_report, options=options, started=started,
    )
    print_skipped(run.skipped_images)
    print_resumed(run)
    if run.result is not None:
        console.print(_summary_table(
            run.result.tables["occlusion_summary.csv"], f"Occlusion on {dataset}/{split.value}: "
            f"{run.result.summary.n_images} images, seeds {','.join(map(str, settings.seeds))}, "
            f"severities {', '.join(f'{s:g}' for s in settings.severities)}",
        ))
        console.print(f"Wrote {run.out}/", highlight=False)
