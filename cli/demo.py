"""``ersm-eval demo`` (what ``make demo`` runs): the method and the toolkit on built-in synthetic data.

Trains a baseline and an ERSM-Full compact CNN (and an L0-gated one with ``--l0``)
with the same budget on synthetic shapes whose training backgrounds match the class
more often than chance (``--spurious``, the context trap), then runs the comparative
evaluation (deletion, occlusion, sparsity and localization) on test images whose
backgrounds are independent of the class, and writes the report into ``--out``.

The sizes and the ERSM settings are in :data:`DEMO_SETTINGS` (the README explains
the choice). ``--quick`` or the environment variable ``ERSM_DEMO_SMALL=1`` runs a
much smaller version for trying things out and for tests; its models are not
expected to learn, and the demo says so when they do not.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import app
from cli.common import Device, Out, Overwrite, Quiet, Workers, console, err_console, handle_errors

__all__ = ["demo", "DEMO_SETTINGS", "SMALL_ENV", "demo_settings", "demo_findings", "cpu_seconds"]

SMALL_ENV = "ERSM_DEMO_SMALL"  # "1": run the small demo (as --quick)

# Measured on 2 CPU cores (see the README's demo section and benchmarks/demo_speed.py).
# The same data, epochs, batch size and learning rate for both models; alpha, beta, tau and
# init_keep only act on the ERSM model's gate.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "image_size": 64,  # compact_cnn: a 4x4 token grid; 64 px keeps training within the time budget
        "num_classes": 6,  # disk, square, triangle x solid, striped
        "n_train": 1000,  # 900 to train on, 100 held out for validation
        "n_test": 300,  # test images, backgrounds independent of the class
        "epochs": 11,
        "batch_size": 16,  # more, smaller steps: the compact CNN learns the shapes in 10 epochs
        "lr": 2e-3,
        "spurious": 0.5,  # half the training backgrounds match the class (58% with the chance matches)
        "alpha": 0.5,  # unary energy weight: strong enough to sparsify the gate within 10 epochs
        "beta": 1e-3,  # pairwise energy weight (the paper's)
        "tau": 0.25,  # gate temperature: a sharper gate separates object from background tokens
        "init_keep": 0.8,  # where the unary energy's pull changes sign for tau = 0.25 (see README)
        "seeds": "0,1,2",  # random deletion orders
        "steps": "all",
        "severities": "0.2,0.4,0.6",
    },
    "small": {
        "image_size": 32, "num_classes": 6, "n_train": 96, "n_test": 36, "epochs": 1, "batch_size": 16,
        "lr": 2e-3, "spurious": 0.5, "alpha": 0.5, "beta": 1e-3, "tau": 0.25, "init_keep": 0.8,
        "seeds": "0", "steps": "all", "severities": "0.4",
    },
}

# shares of the demo's time per stage, measured on the full demo (training dominates)
_STAGE_SHARE = {"train": 0.43, "evaluate": 0.14}


def demo_settings(quick: bool = False) -> dict[str, Any]:
    """The settings of the demo: ``small`` when ``quick`` or ``ERSM_DEMO_SMALL=1``, else ``full``."""
    small = quick or os.environ.get(SMALL_ENV, "").strip() not in ("", "0")
    return dict(DEMO_SETTINGS["small" if small else "full"], size="small" if small else "full")


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Stages:
    """One line per stage with the elapsed time and an estimate of the time left."""

    def __init__(self, shares: list[float], quiet: bool) -> None:
        self.shares, self.quiet = shares, quiet
        self.done, self.index, self.started = 0.0, 0, time.time()

    def start(self, text: str) -> None:
        from cli.progress import format_duration

        self.index += 1
        elapsed = time.time() - self.started
        eta = elapsed / self.done * (1.0 - self.done) if self.done > 0 else float("nan")
        left = f"about {format_duration(eta)} left" if self.done > 0 else "time left known after the first stage"
        if not self.quiet:
            console.print(f"[bold]\\[{self.index}/{len(self.shares)}] {text}[/]  "
                          f"(elapsed {format_duration(elapsed)}, {left})", highlight=False)

    def end(self) -> None:
        self.done = min(1.0, self.done + self.shares[self.index - 1] / sum(self.shares))


def demo_findings(folder: Path, labels: list[str], ersm_label: str, n_classes: int) -> dict[str, Any]:
    """What the demo's output folder shows, per model, in the words of :mod:`ersm_eval.verdicts`.

    For each label: the test accuracy of the model as trained (from the sparsity
    run's per-image records) with its chance test, the chance test of the deletion
    protocol's k = 0 (the ungated map), the deletion verdicts per ranking and their
    sentences, and the warnings of the randomization check of its maps; for the ERSM model also the
    keep map's mass on the object against the better trivial map (from
    localization.csv), the mean keep probability, and its accuracy's paired difference to every
    other model on the same images (group_differences.csv).
    """
    import pandas as pd

    from ersm_eval.studies import DIFFERENCES_FILE, difference_sentence
    from ersm_eval.verdicts import chance_test, deletion_verdicts, localization_sentence, randomization_warning

    found: dict[str, Any] = {}
    for label in labels:
        run = folder / f"deletion-{label}"
        tables = {name: pd.read_csv(run / name) for name in ("deletion_curves.csv", "deletion_summary.csv")}
        verdicts = deletion_verdicts(tables, n_classes, label)
        sparsity = folder / f"sparsity-{label}"
        per_image = pd.read_csv(sparsity / "per_image.csv")
        test = chance_test(int(per_image["correct"].sum()), len(per_image), n_classes)
        entry: dict[str, Any] = {
            "test_accuracy": test.accuracy,  # the model as trained (soft gate), on the test images
            "accuracy_test": test.as_dict(),
            "deletion_chance_test": verdicts["chance_test"],  # k = 0 of the deletion protocol (hard mask, no gate)
            "deletion_verdicts": verdicts["verdicts"],
            "sentences": {"deletion": verdicts["sentences"]["chance"], **verdicts["sentences"]["rankings"]},
        }
        loc_path = sparsity / "localization.csv"
        if loc_path.is_file():
            loc = pd.read_csv(loc_path)
            row = loc[(loc["map"] == "keep") & (loc["metric"] == "mass_in_object")]
            if not row.empty:
                rec = row.iloc[0].to_dict()
                entry["keep_mass_on_object"] = {k: rec.get(k) for k in (
                    "value", "ci_low", "ci_high", "excess", "excess_ci_low", "excess_ci_high", "verdict", "baseline")}
                entry["sentences"]["localization"] = localization_sentence(rec)
        summ = sparsity / "sparsity_summary.csv"
        if summ.is_file():
            table = pd.read_csv(summ)
            keep = table[(table["metric"] == "mean_keep")]
            if not keep.empty:
                entry["mean_keep"] = float(keep.iloc[0]["value"])
        randomized = sparsity / "map_randomization.csv"
        if randomized.is_file():
            table = pd.read_csv(randomized)
            warnings = [randomization_warning(table, str(name)) for name in dict.fromkeys(table["map"])]
            entry["randomization_warnings"] = [w for w in warnings if w]
        found[label] = entry
    found[ersm_label]["is_ersm"] = True
    if (folder / DIFFERENCES_FILE).is_file():
        table = pd.read_csv(folder / DIFFERENCES_FILE)
        rows = table[(table["metric"] == "accuracy") & ((table["group_a"] == ersm_label) | (table["group_b"] == ersm_label))]
        found[ersm_label]["accuracy_differences"] = [difference_sentence(row) for _, row in rows.iterrows()]
    return found


def _print_findings(found: dict[str, Any], spurious: float) -> None:
    console.print(f"[bold]What the demo shows[/] (test backgrounds independent of the class; "
                  f"training backgrounds matched the class with probability {spurious:g}):", highlight=False)
    for label, entry in found.items():
        test = entry["accuracy_test"]
        if test["at_chance"]:
            err_console.print(f"[bold red]{label} is at chance level[/] ({100 * test['accuracy']:.1f}% test accuracy, "
                              f"chance {100 * test['chance']:.1f}%): it learnt nothing usable, and none of its "
                              "results below is a result.", highlight=False)
        console.print(f"  {label}: test accuracy {100 * test['accuracy']:.1f}% on {test['n_images']} images "
                      f"(95% CI {100 * test['ci_low']:.1f}% to {100 * test['ci_high']:.1f}%; chance "
                      f"{100 * test['chance']:.1f}%)", highlight=False)
        console.print(f"    deletion protocol (gate replaced by a hard mask): {entry['sentences']['deletion']}",
                      highlight=False, soft_wrap=True)
        for ranking in ("energy", "unary", "cam", "magnitude", "center"):
            if ranking in entry["sentences"]:
                console.print(f"    {entry['sentences'][ranking]}", highlight=False, soft_wrap=True)
        if "localization" in entry["sentences"]:
            console.print(f"    {entry['sentences']['localization']}", highlight=False, soft_wrap=True)
        if "mean_keep" in entry:
            console.print(f"    mean keep probability {entry['mean_keep']:.3f}", highlight=False)
        for sentence in entry.get("accuracy_differences", []):
            console.print(f"    {sentence}", highlight=False, soft_wrap=True)
        for warning in entry.get("randomization_warnings", []):
            console.print(f"    {warning}", highlight=False, soft_wrap=True)


def _train_models(tmp: Path, variants: list, settings: dict[str, Any], spurious: float, stages: "_Stages",
                  **run: Any) -> list[Path]:
    """Train each demo variant into ``tmp/checkpoints/<variant>.pt``, one stage each; the gate settings
    (alpha, beta, tau, init_keep) apply to the gated models only."""
    from cli.train import Variant, train_command

    gate = {k: settings[k] for k in ("alpha", "beta", "tau", "init_keep")}
    checkpoints = []
    for variant in variants:
        ckpt = tmp / "checkpoints" / f"{variant.value}.pt"
        stages.start(f"Training {variant.value}: {settings['n_train']} synthetic images of {settings['num_classes']} "
                     f"classes at {settings['image_size']} px, {settings['epochs']} epochs, backgrounds matching "
                     f"the class with probability {spurious:g}")
        train_command(
            out=ckpt, dataset="synthetic", backbone="compact_cnn", variant=variant,
            image_size=settings["image_size"], epochs=settings["epochs"], batch_size=settings["batch_size"],
            lr=settings["lr"], num_classes=settings["num_classes"], n_train=settings["n_train"],
            n_test=settings["n_test"], spurious=spurious, **run, **(gate if variant != Variant.baseline else {}),
        )
        stages.end()
        checkpoints.append(ckpt)
    return checkpoints


def _evaluate(tmp: Path, checkpoints: list[Path], settings: dict[str, Any], spurious: float, stages: "_Stages",
              **run: Any) -> None:
    """Deletion, occlusion, sparsity and localization of every demo model on the same test images, one report."""
    from cli.compare import compare_into

    stages.start("Evaluating: deletion, occlusion, sparsity and localization on test images "
                 "whose backgrounds are independent of the class")
    compare_into(
        tmp, checkpoints, "synthetic", seeds=settings["seeds"], deletion_steps=settings["steps"],
        limit=settings["n_test"], occlusion_severities=settings["severities"],
        claims_for={"baseline": "baseline", "ersm": "ersm_full", "init_keep": settings["init_keep"],
                    "spurious": spurious},
        title="ersm-eval demo: baseline vs ERSM-Full on synthetic shapes with a spurious training background", **run,
    )
    stages.end()


@app.command()
@handle_errors
def demo(
    out: Out = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help=f"A much smaller run (32 px, 96 images, 1 epoch) for trying things out; also {SMALL_ENV}=1. Its models do not learn.")] = False,
    spurious: Annotated[float, typer.Option("--spurious", help="Probability that a training image's background style is its class's (default 0.5).")] = -1.0,
    l0: Annotated[bool, typer.Option("--l0/--no-l0", help="Also train and evaluate an L0-gated model.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of training (initialization, shuffling, flips).")] = 0,
    workers: Workers = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a baseline and an ERSM model on synthetic data with a spurious background, evaluate both, write the report."""
    from cli.train import Variant
    from ersm_core.errors import ConfigError
    from ersm_eval.output import check_output_dir, output_folder

    settings = demo_settings(quick)
    if spurious == -1.0:
        spurious = settings["spurious"]
    if not 0.0 <= spurious <= 1.0:
        raise ConfigError(f"--spurious must lie in [0, 1], got {spurious}")
    started, cpu_started = time.time(), cpu_seconds()
    check_output_dir(out, overwrite)
    variants = [Variant.baseline, Variant.ersm_full] + ([Variant.l0] if l0 else [])
    stages = _Stages([_STAGE_SHARE["train"]] * len(variants) + [_STAGE_SHARE["evaluate"]], quiet)
    with output_folder(out, overwrite) as tmp:
        checkpoints = _train_models(tmp, variants, settings, spurious, stages, seed=seed, workers=workers,
                                    device=device, quiet=quiet)
        _evaluate(tmp, checkpoints, settings, spurious, stages, workers=workers, device=device, quiet=quiet)
        labels = [v.value for v in variants]
        found = demo_findings(tmp, labels, "ersm_full", settings["num_classes"])
        record = {
            "settings": {**settings, "spurious": spurious, "seed": seed, "backbone": "compact_cnn"},
            "spurious": spurious,
            "test_split": "synthetic test split: backgrounds independent of the class",
            "checkpoints": {label: f"checkpoints/{label}.pt" for label in labels},
            "models": found,
            "wall_seconds": time.time() - started,
            "cpu_seconds": cpu_seconds() - cpu_started,
        }
        (tmp / "demo.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    if not quiet:
        _print_findings(found, spurious)
    console.print(f"Demo finished in {record['wall_seconds']:.0f} s ({record['cpu_seconds']:.0f} CPU seconds). "
                  f"Report: {out / 'report.html'}", highlight=False)
    console.print(f"Checkpoints: {out / 'checkpoints' / 'baseline.pt'}, {out / 'checkpoints' / 'ersm_full.pt'}",
                  highlight=False)
