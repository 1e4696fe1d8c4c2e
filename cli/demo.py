"""``ersm-eval demo`` (what ``make demo`` runs): the paper's claims on built-in synthetic data.

Trains a baseline and an ERSM-Full compact CNN (and an L0-gated one unless
``--no-l0``) on the synthetic dataset whose training backgrounds predict the class
(``--spurious``, the context trap), then runs the comparative evaluation
(deletion, occlusion, sparsity and localization) on independent test backgrounds
and writes the report with a claims section into ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import Device, Out, Overwrite, Quiet, Workers, console, handle_errors

__all__ = ["demo", "DEMO_SETTINGS"]

# sized so that the full demo takes at most about 5 minutes on 2 CPU cores
DEMO_SETTINGS = {
    "full": {"n_train": 1200, "n_test": 300, "epochs": 3, "image_size": 128, "seeds": "0,1,2,3,4",
             "steps": "all", "severities": "0,0.2,0.4,0.6"},
    "quick": {"n_train": 400, "n_test": 120, "epochs": 2, "image_size": 64, "seeds": "0,1",
              "steps": "all", "severities": "0,0.3,0.6"},
}


@app.command()
@handle_errors
def demo(
    out: Out = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A much smaller run (64 px, fewer images and epochs) for trying things out.")] = False,
    spurious: Annotated[float, typer.Option("--spurious", help="Probability that a training image's background style matches its class.")] = 0.9,
    l0: Annotated[bool, typer.Option("--l0/--no-l0", help="Also train and evaluate an L0-gated model.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data and of training.")] = 0,
    workers: Workers = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a baseline and an ERSM model on synthetic data with a spurious background, evaluate both, write the report."""
    from cli.compare import compare_into
    from cli.train import Variant, train_command
    from ersm_core.errors import ConfigError
    from ersm_eval.output import check_output_dir, output_folder

    if not 0.0 <= spurious <= 1.0:
        raise ConfigError(f"--spurious must lie in [0, 1], got {spurious}")
    started = time.time()
    settings = DEMO_SETTINGS["quick" if quick else "full"]
    check_output_dir(out, overwrite)
    variants = [Variant.baseline, Variant.ersm_full] + ([Variant.l0] if l0 else [])
    with output_folder(out, overwrite) as tmp:
        checkpoints = []
        for variant in variants:
            ckpt = tmp / "checkpoints" / f"{variant.value}.pt"
            console.print(f"[bold]Training {variant.value}[/] on synthetic data "
                          f"({settings['n_train']} images, {settings['epochs']} epochs, spurious {spurious:g})")
            train_command(
                out=ckpt, dataset="synthetic", backbone="compact_cnn", variant=variant,
                image_size=settings["image_size"], epochs=settings["epochs"], n_train=settings["n_train"],
                n_test=settings["n_test"], spurious=spurious, seed=seed, workers=workers, device=device, quiet=quiet,
            )
            checkpoints.append(ckpt)
        console.print("[bold]Evaluating[/]: deletion, occlusion, sparsity and localization on independent test backgrounds")
        compare_into(
            tmp, checkpoints, "synthetic", seeds=settings["seeds"], workers=workers, device=device,
            quiet=quiet, deletion_steps=settings["steps"], limit=settings["n_test"],
            occlusion_severities=settings["severities"],
            claims_for={"baseline": "baseline", "ersm": "ersm_full", "init_keep": 0.9, "spurious": spurious},
            title="ersm-eval demo: baseline vs ERSM-Full on synthetic shapes with a spurious training background",
        )
    console.print(f"Demo finished in {time.time() - started:.0f} s. Report: {out / 'report.html'}", highlight=False)
