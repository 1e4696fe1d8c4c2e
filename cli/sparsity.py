"""``ersm-eval sparsity``: keep statistics, mask coherence and localization for one checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich import box
from rich.table import Table

from cli.app import app
from cli.common import (
    BatchSize, Checkpoint, DataRoot, DatasetName, Device, Limit, NoReport, Overwrite, Quiet, Randomization, Resume, Seeds, SkipBadImages, Split,
    SplitOpt, SubsetSeed, Workers, bars, console, handle_errors, option_values, parse_int_list, print_notes,
    print_resumed, print_skipped, write_report,
)

__all__ = ["sparsity"]

_SHOWN = (  # (map, metric, threshold or None) rows of the printed summary
    ("", "accuracy", None), ("keep", "mean_keep", None), ("keep", "frac_below_half", None),
    ("keep", "keep_entropy", None), ("keep", "n_components", None), ("keep", "largest_component_share", None),
    ("keep", "neighbour_agreement", None), ("keep", "mean_keep_correct", None), ("keep", "mean_keep_wrong", None),
)
_LOCALIZATION = ("mass_in_object", "iou@0.5", "box_accuracy", "pointing_game")  # metrics of localization.csv printed




def _value(rows, map_name: str, metric: str, threshold: float | None):
    sel = rows[(rows["map"].fillna("") == map_name) & (rows["metric"] == metric)]
    if threshold is not None:
        sel = sel[np.isclose(sel["threshold"], threshold)]
    return None if sel.empty else sel.iloc[0]


def _fmt(row) -> str:
    """A table row's value with its interval in brackets, in the one number format of ersm_eval.verdicts."""
    from ersm_eval.verdicts import format_number

    if row is None:
        return "n/a"
    ci = "" if format_number(row.ci_low) == "n/a" else f" [{format_number(row.ci_low)}, {format_number(row.ci_high)}]"
    return f"{format_number(row.value)}{ci}"


def _localization_tables(localization, label: str) -> list[Table]:
    """Per real map, its headline localization scores beside the better baseline, with the verdict."""
    from ersm_eval.verdicts import format_number

    tables = []
    real = localization[(localization["verdict"] != "baseline") & localization["metric"].isin(_LOCALIZATION)]
    for name in dict.fromkeys(real["map"]):
        table = Table(title=f"Localization, {label} {name} map, against the better of the uniform and center maps",
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        table.add_column("metric", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("baseline", justify="right", no_wrap=True)
        table.add_column("excess [95% CI]", justify="right", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        for row in real[real["map"] == name].itertuples(index=False):
            base = localization[(localization["map"] == row.baseline) & (localization["metric"] == row.metric)]
            base_cell = f"{format_number(base.iloc[0].value)} {row.baseline}" if len(base) else "n/a"
            excess = format_number(row.excess, "signed")
            if excess != "n/a" and format_number(row.excess_ci_low) != "n/a":
                excess += f" [{format_number(row.excess_ci_low, 'signed')}, {format_number(row.excess_ci_high, 'signed')}]"
            value = format_number(row.value)
            table.add_row(row.metric, value, base_cell, excess, row.verdict.replace("_", " "))
        tables.append(table)
    return tables


def _tables(summary, label: str, title: str) -> list[Table]:
    stats = Table(title=title, title_justify="left")
    stats.add_column("statistic")
    stats.add_column("value [95% CI]", justify="right")
    for map_name, metric, thr in _SHOWN:
        row = _value(summary, map_name, metric, thr)
        if row is not None:
            stats.add_row(f"{map_name + ' ' if map_name else ''}{metric}", _fmt(row))
    return [stats]


@app.command()
@handle_errors
def sparsity(
    checkpoint: Checkpoint,
    dataset: DatasetName,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    localization: Annotated[bool, typer.Option(
        "--localization/--no-localization",
        help="Compare keep / energy / CAM maps with the object masks or boxes (skipped, with a note, on datasets without them).",
    )] = True,
    gallery_indices: Annotated[str, typer.Option(
        "--gallery-indices", help="Comma-separated dataset indices always stored in maps.npz for the report's galleries.",
    )] = "",
    seeds: Seeds = "0",
    batch_size: BatchSize = 64,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (written under a temporary name, then renamed). Default: runs/sparsity-<label>.",
    )] = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="Name of the model in the tables' checkpoint column. Default: the checkpoint's file name stem.",
    )] = None,
    skip_bad_images: SkipBadImages = False,
    randomization: Randomization = True,
    no_report: NoReport = False,
    quiet: Quiet = False,
) -> None:
    """Sparsity and mask statistics: keep rates, coherence of the hard mask, localization of keep / energy / CAM maps, per-image records.

    Nothing here is random; the first of --seeds seeds the bootstrap intervals.
    """
    from ersm_eval.pipelines import run_sparsity

    options, started = option_values(locals()), time.time()
    extra = parse_int_list(gallery_indices, "--gallery-indices") if gallery_indices.strip() else []
    run = run_sparsity(
        checkpoint, dataset, label=label, localize=localization, seed=parse_int_list(seeds, "--seeds")[0],
        gallery_indices=extra, out=out, overwrite=overwrite, resume=resume, split=split.value, data_root=data_root, limit=limit,
        subset_seed=subset_seed, device=device, batch_size=batch_size, workers=workers,
        skip_bad_images=skip_bad_images, progress=bars(quiet), randomization=randomization,
        after=None if no_report else write_report,
        options=options, started=started,
    )
    print_skipped(run.skipped_images)
    print_resumed(run)
    if run.result is not None:
        summary = run.result.summary
        _print(run.result, f"Sparsity, {summary.label} ({summary.model.variant}) on {dataset}/{split.value}", run.out)


def _print(result, title: str, out: Path) -> None:
    """The console's account: statistics, localization against the baselines, warnings and notes."""
    summary = result.summary
    for table in _tables(result.tables["sparsity_summary.csv"], summary.label, f"{title}: {summary.n_images} images"):
        console.print(table)
    if "localization.csv" in result.tables:
        for table in _localization_tables(result.tables["localization.csv"], summary.label):
            console.print(table)
    localization = summary.evaluation["localization"]
    warning = localization["note"] if localization["uninformative"] else None
    if warning:
        console.print(f"[bold yellow]Warning:[/] {warning}", highlight=False)
    randomized = result.tables.get("map_randomization.csv")
    if randomized is not None:
        from ersm_eval.verdicts import randomization_warning

        for map_name in dict.fromkeys(randomized["map"]):
            text = randomization_warning(randomized, str(map_name))
            if text:
                console.print(f"[bold yellow]{text}[/]", highlight=False)
    print_notes([note for note in summary.notes if note != warning])
    console.print(f"Wrote {out}/", highlight=False)
