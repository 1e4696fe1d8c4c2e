"""``ersm-eval occlusion``: input-level occlusion stress test (SPEC §3) for one or more checkpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from cli.app import app
from cli.common import (
    BatchSize, SubsetSeed, Checkpoints, DataRoot, DatasetName, Device, Limit, NoReport, Overwrite, Quiet, Seeds, SkipBadImages, Split, SplitOpt,
    Workers, console, err_console, handle_errors, report_skipped, write_report, parse_int_list, parse_name_list, progress_bar,
)
from ersm_core.errors import ConfigError, DatasetError

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




def _pct(value) -> str:
    return "–" if value is None or value != value else f"{100 * float(value):.1f}"


def _summary_table(summary, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("checkpoint", "fill", "pattern", "acc@0 %", "AUC %", "mean rel. robustness", "min rel. robustness",
                 "AUC diff to first, pts [95% CI]"):
        table.add_column(name, justify="left" if name in ("checkpoint", "fill", "pattern") else "right")
    for row in summary.itertuples(index=False):
        diff = "–"
        if row.diff_auc_to_first == row.diff_auc_to_first:
            diff = f"{100 * row.diff_auc_to_first:+.1f} [{100 * row.diff_ci_low:+.1f}, {100 * row.diff_ci_high:+.1f}]"
        rel = lambda v: "–" if v != v else f"{v:.3f}"  # noqa: E731
        table.add_row(row.checkpoint, row.fill, row.pattern, _pct(row.acc0), _pct(row.auc),
                      rel(row.mean_relative_robustness), rel(row.min_relative_robustness), diff)
    return table


@app.command()
@handle_errors
def occlusion(
    checkpoints: Checkpoints,
    dataset: DatasetName,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    fills: Annotated[str, typer.Option(
        "--fills", help="Comma-separated fills: gray (alias mean: the normalization mean), black, noise (seeded), blur.",
    )] = "gray",
    patterns: Annotated[str, typer.Option(
        "--patterns", help="Comma-separated patterns: random_squares, grid, center, object, background. "
        "object/background need object masks or boxes and are skipped (with a note) on datasets without them.",
    )] = "random_squares,grid,center,object,background",
    severities: Annotated[str, typer.Option(
        "--severities", help="Comma-separated area fractions in [0, 1] (0 is always added). For object/background: "
        "the fraction of the object's / background's pixels covered.",
    )] = "0,0.1,0.2,0.3,0.4,0.5,0.6",
    grid_size: Annotated[int, typer.Option("--grid-size", help="Cells per side of the grid pattern.")] = 4,
    seeds: Seeds = "0",
    batch_size: BatchSize = 64,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (written under a temporary name, then renamed). Default: runs/occlusion-<label>.",
    )] = None,
    overwrite: Overwrite = False,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", help="Names of the checkpoints in the tables (repeat the option or give a comma list, one per "
        "checkpoint). Default: the checkpoint file name stems.",
    )] = None,
    skip_bad_images: SkipBadImages = False,
    no_report: NoReport = False,
    quiet: Quiet = False,
) -> None:
    """Occlusion stress test: accuracy under seeded occluders (fills × patterns × severities); several checkpoints see identical occluders."""
    from ersm_core.device import select_device
    from ersm_eval import distributed
    from ersm_eval.context import iterate_batches, prepare
    from ersm_eval.occlusion import OcclusionConfig, OcclusionEvaluator, compute_occlusion, resolve_patterns
    from ersm_eval.output import check_output_dir, output_folder, run_info, write_json, write_table

    started = time.time()
    labels = checkpoint_labels(list(checkpoints), label)
    config = OcclusionConfig(
        fills=tuple(parse_name_list(fills, "--fills")),
        patterns=tuple(parse_name_list(patterns, "--patterns")),
        severities=tuple(parse_float_list(severities, "--severities")),
        seeds=tuple(parse_int_list(seeds, "--seeds")),
        grid_size=grid_size,
    )
    out = out if out is not None else Path("runs") / f"occlusion-{'-vs-'.join(l.replace('/', '_') for l in labels)}"
    check_output_dir(out, overwrite, inputs=[*checkpoints, data_root])  # before any work

    distributed.init_from_env(select_device(device))
    main = distributed.is_main()
    run_device = str(distributed.local_device(select_device(device)))
    runs: dict[str, dict[str, np.ndarray]] = {}
    described, notes = [], []
    active: list[str] | None = None
    reference = None  # (dataset length, classes, image size, indices) of the first checkpoint
    for path, name in zip(checkpoints, labels):
        setup = prepare(path, dataset, split.value, data_root, limit, run_device, subset_seed=subset_seed)
        data = setup.dataset
        has_masks = bool(data.has_masks or data.has_boxes)
        if active is None:
            active, skipped = resolve_patterns(config.patterns, has_masks, f"dataset {dataset!r}")
            notes += list(skipped.values())
            if main:
                for reason in skipped.values():
                    err_console.print(f"[yellow]Note:[/] {reason}", highlight=False)
        size = data.transform.image_size
        if reference is None:
            reference = (len(data), list(data.classes), size, list(setup.indices))
        else:
            if (len(data), list(data.classes), list(setup.indices)) != (reference[0], reference[1], reference[3]):
                raise DatasetError(
                    f"checkpoint {path} sees {len(data)} images of {len(data.classes)} classes where the first sees "
                    f"{reference[0]} of {len(reference[1])}; occlusion compares checkpoints trained on the same dataset"
                )
            if size != reference[2]:
                note = (f"{name} uses {size} px images where the first checkpoint uses {reference[2]} px: its occluder "
                        "masks were generated at its own size from the same seeds")
                notes.append(note)
                if main:
                    err_console.print(f"[yellow]Note:[/] {note}", highlight=False)
        evaluator = OcclusionEvaluator(setup.model, config, data.transform.mean, data.transform.std, active, batch_size)
        passes = evaluator.forward_count(len(setup.indices))
        with progress_bar(len(setup.indices), f"occlusion ({name}, {passes} forward passes)", enabled=not quiet and main) as advance:
            bad_images: list[tuple[int, str]] = []
            for batch in iterate_batches(data, setup.indices, batch_size, workers, setup.device, advance,
                                         skip_bad_images=skip_bad_images, skipped=bad_images):
                evaluator.update(batch)
        if not described:  # the same files are unreadable for every checkpoint: report them once
            skipped_images = report_skipped(bad_images)
        records = distributed.gather_records(evaluator.records())
        if records is not None:
            runs[name] = records
        described.append({"label": name, **setup.describe()})
        del setup, evaluator

    if not main:  # rank 0 writes
        distributed.shutdown()
        return
    curves, summary = compute_occlusion(runs, config, active)
    tables = {"occlusion.csv": curves, "occlusion_summary.csv": summary}
    with output_folder(out, overwrite) as folder:
        for table_name, table in tables.items():
            write_table(folder, table_name, table)
        write_json(folder, {
            "command": "occlusion",
            "label": labels[0] if len(labels) == 1 else " vs ".join(labels),
            "labels": labels,
            "options": {
                "checkpoints": [str(c) for c in checkpoints], "dataset": dataset, "data_root": data_root,
                "split": split.value, "fills": fills, "patterns": patterns, "severities": severities,
                "grid_size": grid_size, "seeds": seeds, "batch_size": batch_size, "workers": workers,
                "device": device, "limit": limit, "subset_seed": subset_seed, "out": str(out), "overwrite": overwrite, "label": label,
                "no_report": no_report,
            },
            "occlusion": {**config.to_dict(), "patterns_run": active, "severity": "area fraction of the image; "
                          "object/background: fraction of the object's/background's pixels"},
            "class_names": described[0]["class_names"],
            "checkpoints": described,
            "notes": notes,
            "tables": sorted(tables),
            "skipped_images": skipped_images,
            "world_size": distributed.world_size(),
            **run_info(started),
        })
        if not no_report:
            write_report(folder)
    distributed.shutdown()

    console.print(_summary_table(
        summary, f"Occlusion on {dataset}/{split.value}: {len(next(iter(runs.values()))['index'])} images, "
        f"seeds {','.join(map(str, config.seeds))}, severities {', '.join(f'{s:g}' for s in config.severities)}",
    ))
    console.print(f"Wrote {out}/", highlight=False)
