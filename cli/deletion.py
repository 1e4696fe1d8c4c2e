"""``ersm-eval deletion``: deletion curves of every ranking (SPEC §2) for one checkpoint."""

from __future__ import annotations

import time
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from cli.app import app
from cli.common import (
    BatchSize, SubsetSeed, Cache, Checkpoint, SkipBadImages, DataRoot, DatasetName, Device, Limit, NoReport, Out, Overwrite, Quiet, Seeds,
    Split, SplitOpt, Workers, console, err_console, handle_errors, report_skipped, write_report, parse_int_list, parse_name_list, progress_bar,
)
from ersm_core.errors import ConfigError

__all__ = ["deletion"]


class Level(str, Enum):
    feature = "feature"
    input = "input"


class Fill(str, Enum):
    mean = "mean"
    black = "black"
    noise = "noise"
    blur = "blur"


def _parse_steps(text: str) -> int | None:
    """'all' → None; an integer ≥ 2 → that count."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--steps takes 'all' or an integer count of k values, got {text!r}") from None
    if value < 2:
        raise ConfigError(f"--steps must be 'all' or at least 2 (k = 0 and k = N−1), got {value}")
    return value




def _fmt(value, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is np.nan:
        return "–"
    try:
        if value != value:  # pandas NA compares oddly; NaN is not equal to itself
            return "–"
    except TypeError:
        return "–"
    return f"{100 * float(value):.1f}" if percent else f"{int(value)}"


def _points(value, low=None, high=None) -> str:
    """Signed points (×100), with the interval in brackets when given; '–' for a missing value."""
    if _fmt(value) == "–":
        return "–"
    text = f"{100 * float(value):+.1f}"
    if low is not None and _fmt(low) != "–" and _fmt(high) != "–":
        text += f" [{100 * float(low):+.1f}, {100 * float(high):+.1f}]"
    return text


def _summary_table(summary, title: str) -> Table:
    """The console's summary: ΔAUC to random with its interval and the verdict first, then the curve's own numbers."""
    table = Table(title=title, title_justify="left")
    for name in ("ranking", "ΔAUC, pts [95% CI]", "verdict", "AUC %", "acc@k=0 %", "steps above / below random",
                 "smallest .. largest gap, pts (k)", "half-acc k", "seeds"):
        table.add_column(name, justify="left" if name in ("ranking", "verdict") else "right")
    for row in summary.itertuples(index=False):
        steps, gaps = "–", "–"
        if _fmt(row.steps_above_random, percent=False) != "–":
            steps = f"{row.steps_above_random} / {row.steps_below_random} of {row.n_steps}"
        if _fmt(row.max_gap_to_random) != "–":
            gaps = f"{_points(row.min_gap_to_random)} ({row.min_gap_k}) .. {_points(row.max_gap_to_random)} ({row.max_gap_k})"
        half = "–" if str(row.half_accuracy_k) in ("<NA>", "nan") else str(row.half_accuracy_k)
        table.add_row(
            row.ranking, _points(row.auc_diff, row.auc_diff_ci_low, row.auc_diff_ci_high),
            row.verdict if isinstance(row.verdict, str) and row.verdict else "reference",
            _fmt(row.auc), _fmt(row.acc_k0), steps, gaps, half, str(row.n_seeds),
        )
    return table


@app.command()
@handle_errors
def deletion(
    checkpoint: Checkpoint,
    dataset: DatasetName,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    rankings: Annotated[str, typer.Option(
        "--rankings", "-r",
        help="Comma-separated rankings: energy, unary, random, magnitude, magnitude_desc, cam, energy_reversed, "
        "center (nearest the grid centre first), border (farthest first). "
        "Those that do not apply to the model (energy and unary need an ERSM model) are skipped with a note.",
    )] = "energy,unary,magnitude,cam,center,border,random",
    seeds: Seeds = "0,1,2,3,4",
    steps: Annotated[str, typer.Option(
        "--steps", help="'all' (k = 0..N−1) or a count of evenly spaced k values, 0 and N−1 included.",
    )] = "all",
    soft_gate: Annotated[bool, typer.Option(
        "--soft-gate", help="Delete on the gated map (survivors keep their keep probability) instead of the ungated map.",
    )] = False,
    no_rescale: Annotated[bool, typer.Option(
        "--no-rescale", help="Pool by the plain mean over all positions instead of the mean over the remaining ones (GAP·N/(N−k)).",
    )] = False,
    level: Annotated[Level, typer.Option(
        "--level", help="feature: delete tokens of the feature map (the paper's protocol); input: fill the image regions and re-run the model.",
    )] = Level.feature,
    fill: Annotated[Fill, typer.Option(
        "--fill", help="Input level: what replaces deleted regions (mean colour, black, seeded noise, blurred image).",
    )] = Fill.mean,
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (written under a temporary name, then renamed). Default: runs/deletion-<label>.",
    )] = None,
    overwrite: Overwrite = False,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="Name of the model in the tables' checkpoint column. Default: the checkpoint's file name stem.",
    )] = None,
    save_token_scores: Annotated[bool, typer.Option(
        "--save-token-scores", help="Also write token_scores.npz: every ranking's score and order per image and token.",
    )] = False,
    cache: Cache = None,
    skip_bad_images: SkipBadImages = False,
    no_report: NoReport = False,
    quiet: Quiet = False,
) -> None:
    """Deletion curves: accuracy as tokens are deleted in the order of each ranking, every k, one backbone pass per image."""
    from ersm_core.device import select_device
    from ersm_eval import distributed
    from ersm_eval.context import iterate_batches, prepare
    from ersm_eval.deletion import DeletionEvaluator, DeletionSettings, token_score_arrays
    from ersm_eval.output import check_output_dir, output_folder, run_info, write_json, write_table

    started = time.time()
    label = label or Path(checkpoint).stem
    out = out if out is not None else Path("runs") / f"deletion-{label}"
    settings = DeletionSettings(
        rankings=tuple(parse_name_list(rankings, "--rankings")),
        seeds=tuple(parse_int_list(seeds, "--seeds")),
        steps=_parse_steps(steps),
        soft_gate=soft_gate,
        rescale=not no_rescale,
        level=level.value,
        fill=fill.value,
        save_token_scores=save_token_scores,
        label=label,
    )
    if cache is not None and level is Level.input:
        raise ConfigError("--cache stores backbone features, which --level input does not use; drop one of them")
    check_output_dir(out, overwrite, inputs=[checkpoint, data_root, cache])  # before any work

    distributed.init_from_env(select_device(device))
    setup = prepare(checkpoint, dataset, split.value, data_root, limit,
                    str(distributed.local_device(select_device(device))), subset_seed=subset_seed)
    evaluator = DeletionEvaluator(setup.model, settings)
    if distributed.is_main():
        for name, reason in evaluator.skipped.items():
            err_console.print(f"[yellow]Skipped ranking {name}:[/] {reason}", highlight=False)

    feature_cache = None
    skipped: list[tuple[int, str]] = []
    with progress_bar(len(setup.indices), f"deletion ({label})", enabled=not quiet and distributed.is_main()) as advance:
        if level is Level.feature:
            from ersm_eval.features import feature_batches

            if cache is not None:
                from ersm_eval.cache import FeatureCache, cache_key

                feature_cache = FeatureCache(cache, cache_key(
                    setup.checkpoint.sha256, dataset, split.value, asdict(setup.dataset.transform), setup.options,
                ))
            batches = feature_batches(setup.model, setup.dataset, setup.indices, batch_size, workers, setup.device,
                                      feature_cache, advance, skip_bad_images=skip_bad_images, skipped=skipped)
        else:
            batches = iterate_batches(setup.dataset, setup.indices, batch_size, workers, setup.device, advance,
                                      skip_bad_images=skip_bad_images, skipped=skipped)
        for batch in batches:
            evaluator.update(batch)

    skipped = report_skipped(skipped)
    records = distributed.gather_records(evaluator.records())
    if records is None:  # not rank 0: rank 0 writes
        distributed.shutdown()
        return
    tables = evaluator.compute(records)
    verdicts = evaluator.verdicts(tables)
    if verdicts["chance_test"]["at_chance"]:  # said first: no curve or table below means anything
        console.print(f"[bold red]Model at chance.[/] {verdicts['sentences']['chance']}", highlight=False)
    with output_folder(out, overwrite) as folder:
        for name, table in tables.items():
            write_table(folder, name, table)
        if save_token_scores:
            np.savez_compressed(folder / "token_scores.npz",
                                **token_score_arrays(records, evaluator.curves, setup.model.grid))
        write_json(folder, {
            "command": "deletion",
            "label": label,
            "options": {
                "checkpoint": str(checkpoint), "dataset": dataset, "data_root": data_root, "split": split.value,
                "rankings": rankings, "seeds": seeds, "steps": steps, "soft_gate": soft_gate,
                "no_rescale": no_rescale, "level": level.value, "fill": fill.value, "batch_size": batch_size,
                "workers": workers, "device": device, "limit": limit, "subset_seed": subset_seed, "out": str(out), "overwrite": overwrite,
                "label": label, "save_token_scores": save_token_scores, "cache": cache, "no_report": no_report,
                "skip_bad_images": skip_bad_images,
            },
            **setup.describe(),
            "deletion": evaluator.describe(),
            "skipped_images": skipped,
            "cache": None if feature_cache is None else {
                "dir": str(feature_cache.dir), "hits": feature_cache.hits, "misses": feature_cache.misses,
                "rebuilt": feature_cache.rebuilt,
            },
            "tables": sorted(tables),
            "chance_test": verdicts["chance_test"],
            "verdicts": verdicts["verdicts"],
            "verdict_sentences": verdicts["sentences"],
            "energy_diagnostics": verdicts["energy_diagnostics"],
            "world_size": distributed.world_size(),
            **run_info(started),
        })
        if not no_report:
            write_report(folder)
    distributed.shutdown()

    if not verdicts["chance_test"]["at_chance"]:
        console.print(verdicts["sentences"]["chance"], highlight=False)
    console.print(_summary_table(
        tables["deletion_summary.csv"],
        f"Deletion, {label} on {dataset}/{split.value}: {len(records['index'])} images, "
        f"N = {evaluator.n_tokens} tokens, {settings.level} level, "
        f"{'soft' if settings.soft_gate else 'hard'} gate{'' if settings.rescale else ', no rescale'}",
    ))
    for sentence in verdicts["sentences"]["rankings"].values():
        console.print(f"- {sentence}", highlight=False)
    if verdicts["sentences"]["position"]:
        console.print(verdicts["sentences"]["position"], highlight=False)
    elif isinstance(verdicts["energy_diagnostics"], str):
        console.print(f"Note: {verdicts['energy_diagnostics']}.", highlight=False)
    console.print(f"Wrote {out}/", highlight=False)
