"""``ersm-eval report``: rebuild the HTML report and figures from run folders, without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.app import app
from cli.common import console, handle_errors

__all__ = ["report"]


@app.command()
@handle_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Output folders of deletion / occlusion / sparsity / compare runs.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write; figures go to a 'figures' folder beside it.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option("--title", help="Report title.")] = None,
    by_checkpoint: Annotated[bool, typer.Option(
        "--by-checkpoint/--by-folder",
        help="Group the tables of all folders by checkpoint (one entry per model) or keep one entry per folder.",
    )] = True,
) -> None:
    """Rebuild one (comparative) HTML report from the CSVs of one or more run folders."""
    from reports import build_report, load_run
    from reports.combine import combine_by_checkpoint

    runs = [load_run(d) for d in run_dirs]
    if by_checkpoint:
        runs = combine_by_checkpoint(runs)
    path = build_report(runs, out, title=title)
    console.print(f"Wrote {path}", highlight=False)
