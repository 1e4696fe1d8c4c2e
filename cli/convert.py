"""``ersm-eval convert``: rewrite a checkpoint in the other file format (.pt ↔ .safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app
from cli.common import console, handle_errors

__all__ = ["convert_command"]


@app.command("convert")
@handle_errors
def convert_command(
    source: Annotated[Path, typer.Argument(help="Checkpoint to read (.pt or .safetensors).", show_default=False)],
    target: Annotated[Path, typer.Argument(help="Checkpoint to write: NAME.safetensors or NAME.pt (the suffix picks the format).", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing checkpoint at TARGET.")] = False,
) -> None:
    """Convert a checkpoint between .pt and .safetensors: same weights, config, class names and provenance."""
    from ersm_core.checkpoint import convert_checkpoint
    from ersm_core.training import check_writable
    from ersm_eval.output import check_output_file

    check_output_file(target, overwrite, inputs=[source], option="TARGET")  # never the source, only checkpoints replaced
    check_writable(target, "TARGET")
    written = convert_checkpoint(source, target)
    console.print(f"checkpoint: {written}", highlight=False, soft_wrap=True)
