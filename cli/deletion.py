"""``ersm-eval deletion``: deletion curves of every ranking for one checkpoint."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.app import app
from cli.common import (
    BatchSize, Cache, Checkpoint, DataRoot, DatasetName, Device, Limit, NoReport, Overwrite, Quiet, Resume, Seeds, SkipBadImages,
    Split, SplitOpt, SubsetSeed, Workers, bars, console, err_console, handle_errors, option_values, parse_int_list,
    parse_name_list, print_resumed, print_skipped, write_report,
)
from ersm_core.errors import ConfigError

__all__ = ["deletion", "deletion_settings"]


class Level(str, Enum):
    feature = "feature"
    input = "input"


class Fill(str, Enum):
    mean = "mean"
    black = "black"
    noise = "noise"
    blur = "blur"
    nli = "nli"


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
    """A fraction in percent (no sign), or a count; the one number format of ersm_eval.verdicts."""
    from ersm_eval.verdicts import format_number

    return format_number(value, "percent").rstrip("%") if percent else format_number(value, "count")


def _points(value, low=None, high=None) -> str:
    """Signed points (×100), with the interval in brackets when given."""
    from ersm_eval.verdicts import format_number

    text = format_number(value, "points")
    if text != "n/a" and low is not None and format_number(low) != "n/a" and format_number(high) != "n/a":
        text += f" [{format_number(low, 'points')}, {format_number(high, 'points')}]"
    return text


def _summary_table(summary, title: str) -> Table:
    """The console's summary: the symmetric gain (LeRF − MoRF) with its interval and the verdict first, then
    each order's ΔAUC to random and the LeRF curve's own numbers."""
    table = Table(title=title, title_justify="left")
    for name in ("ranking", "SG = LeRF − MoRF, pts [95% CI]", "verdict", "ΔAUC LeRF vs random, pts",
                 "ΔAUC MoRF vs random, pts", "AUC LeRF / MoRF %", "acc@k=0 %", "LeRF steps above / below random",
                 "half-acc k (LeRF)"):
        table.add_column(name, justify="left" if name in ("ranking", "verdict") else "right")
    for row in summary.itertuples(index=False):
        steps = "n/a"
        if _fmt(row.steps_above_random, percent=False) != "n/a":
            steps = f"{row.steps_above_random} / {row.steps_below_random} of {row.n_steps}"
        half = _fmt(row.half_accuracy_k, percent=False)
        reference = row.ranking == "random"
        table.add_row(
            row.ranking, "n/a" if reference else _points(row.sg, row.sg_ci_low, row.sg_ci_high),
            row.verdict if isinstance(row.verdict, str) and row.verdict else "reference",
            _points(row.auc_diff_lerf, row.auc_diff_lerf_ci_low, row.auc_diff_lerf_ci_high),
            _points(row.auc_diff_morf, row.auc_diff_morf_ci_low, row.auc_diff_morf_ci_high),
            _fmt(row.auc_lerf) if reference else f"{_fmt(row.auc_lerf)} / {_fmt(row.auc_morf)}",
            _fmt(row.acc_k0), steps, half,
        )
    return table


Rankings = Annotated[str, typer.Option(
    "--rankings", "-r",
    help="Comma-separated rankings: energy, unary, magnitude, cam, center (position only), random. Each but random "
    "is deleted in both orders: most important first (MoRF) and least important first (LeRF). The old names "
    "border, magnitude_desc and energy_reversed run center, magnitude and energy with a note. "
    "Those that do not apply to the model (energy and unary need an ERSM model) are skipped with a note.",
)]
Steps = Annotated[str, typer.Option(
    "--steps", help="'all' (k = 0..N−1) or a count of evenly spaced k values, 0 and N−1 included.",
)]
SoftGate = Annotated[bool, typer.Option(
    "--soft-gate", help="Delete on the gated map (survivors keep their keep probability) instead of the ungated map.",
)]
NoRescale = Annotated[bool, typer.Option(
    "--no-rescale", help="Pool by the plain mean over all positions instead of the mean over the remaining ones (GAP·N/(N−k)).",
)]
LevelOpt = Annotated[Level, typer.Option(
    "--level", help="feature: delete tokens of the feature map (the paper's protocol); input: fill the image regions and re-run the model.",
)]
FillOpt = Annotated[Fill, typer.Option(
    "--fill", help="Input level: what replaces deleted regions: mean colour, black, seeded noise, blurred image, or "
    "nli (noisy linear imputation from the surrounding pixels, so the hole's shape does not leak the ranking).",
)]
InsertionOpt = Annotated[bool, typer.Option(
    "--insertion", help="Input level only: also insertion curves. Each image starts blurred (σ = half a token's side) "
    "and the original pixels come back under the first k tokens of each ranking's most-important-first (MoRF) order "
    "(random: its seeded permutation); higher insertion area = better. Writes insertion_curves.csv and "
    "insertion_summary.csv; costs one more model run per ranking, k and image. Refused at --level feature, where it "
    "would repeat the least-important-first deletion curve.",
)]
DeletionOut = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (written under a temporary name, then renamed). Default: runs/deletion-<label>.",
)]
Label = Annotated[Optional[str], typer.Option(
    "--label", help="Name of the model in the tables' checkpoint column. Default: the checkpoint's file name stem.",
)]
SaveTokenScores = Annotated[bool, typer.Option(
    "--save-token-scores", help="Also write token_scores.npz: every ranking's score and order per image and token.",
)]
Scores = Annotated[Optional[Path], typer.Option(
    "--scores", help="External score maps (.npy, [n_images, h, w] on the token grid or [n_images, H, W] in pixels), "
    "one per evaluated image in ascending dataset-index order (the --limit subset's order); a high value marks a "
    "token as important; evaluated in both orders as ranking --scores-name beside the built-in ones.",
)]
ScoresName = Annotated[str, typer.Option(
    "--scores-name", help="Name of the --scores ranking in the tables.",
)]


@app.command()
@handle_errors
def deletion(
    checkpoint: Checkpoint,
    dataset: DatasetName,
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    rankings: Rankings = "energy,unary,magnitude,cam,center,random",
    seeds: Seeds = "0,1,2,3,4",
    steps: Steps = "all",
    soft_gate: SoftGate = False,
    no_rescale: NoRescale = False,
    level: LevelOpt = Level.feature,
    fill: FillOpt = Fill.mean,
    insertion: InsertionOpt = False,
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    subset_seed: SubsetSeed = 0,
    out: DeletionOut = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    label: Label = None,
    save_token_scores: SaveTokenScores = False,
    cache: Cache = None,
    scores: Scores = None,
    scores_name: ScoresName = "external",
    skip_bad_images: SkipBadImages = False,
    no_report: NoReport = False,
    quiet: Quiet = False,
) -> None:
    """Deletion curves: accuracy as tokens are deleted in both orders of each ranking, every k, one backbone pass per image."""
    from ersm_eval.pipelines import run_deletion

    options, started = option_values(locals()), time.time()
    settings = deletion_settings(rankings, seeds, steps, soft_gate, no_rescale, level, fill, save_token_scores,
                                 label or Path(checkpoint).stem, insertion)
    run = run_deletion(
        checkpoint, dataset, settings, out=out, overwrite=overwrite, resume=resume, split=split.value, data_root=data_root, limit=limit,
        subset_seed=subset_seed, device=device, batch_size=batch_size, workers=workers, cache=cache, scores=scores,
        scores_name=scores_name, skip_bad_images=skip_bad_images, progress=bars(quiet),
        after=None if no_report else write_report, options=options, started=started,
    )
    print_skipped(run.skipped_images)
    print_resumed(run)
    if run.result is not None:
        _print(run.result, f"Deletion, {settings.label} on {dataset}/{split.value}", run.out)


def deletion_settings(rankings: str, seeds: str, steps: str, soft_gate: bool, no_rescale: bool, level: Level, fill: Fill,
                      save_token_scores: bool, label: str, insertion: bool = False):
    """The :class:`~ersm_eval.deletion.DeletionSettings` of the command's options."""
    from ersm_eval.deletion import DeletionSettings

    return DeletionSettings(
        rankings=tuple(parse_name_list(rankings, "--rankings")), seeds=tuple(parse_int_list(seeds, "--seeds")),
        steps=_parse_steps(steps), soft_gate=soft_gate, rescale=not no_rescale, level=level.value, fill=fill.value,
        save_token_scores=save_token_scores, label=label, insertion=insertion,
    )


def _print(result, title: str, out: Path) -> None:
    """The console's account: chance test first, the summary table, the verdicts in words."""
    summary = result.summary
    for name, reason in summary.evaluation["skipped_rankings"].items():
        err_console.print(f"[yellow]Skipped ranking {name}:[/] {reason}", highlight=False)
    for name, note in summary.evaluation.get("ranking_notes", {}).items():
        err_console.print(f"[yellow]Note:[/] {note}", highlight=False)
    chance, sentences = summary.chance_test, summary.verdict_sentences
    if chance["at_chance"]:  # said first: no curve or table below means anything
        console.print(f"[bold red]Model at chance.[/] {sentences['chance']}", highlight=False)
    else:
        console.print(sentences["chance"], highlight=False)
    st = summary.settings
    console.print(_summary_table(
        result.tables["deletion_summary.csv"],
        f"{title}: {summary.n_images} images, N = {summary.evaluation['n_tokens']} tokens, {st['level']} level, "
        f"{'soft' if st['soft_gate'] else 'hard'} gate{'' if st['rescale'] else ', no rescale'}",
    ))
    for sentence in sentences["rankings"].values():
        console.print(f"- {sentence}", highlight=False)
    insertion = sentences.get("insertion")
    if insertion:  # after the deletion verdicts: inserting most important first against random insertion
        console.print("Insertion (blurred image, most important tokens put back first):", highlight=False)
        for sentence in insertion.values():
            console.print(f"- {sentence}", highlight=False)
    if sentences["position"]:
        console.print(sentences["position"], highlight=False)
    elif isinstance(summary.energy_diagnostics, str):
        console.print(f"Note: {summary.energy_diagnostics}.", highlight=False)
    console.print(f"Wrote {out}/", highlight=False)
