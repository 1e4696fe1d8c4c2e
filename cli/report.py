"""``ersm-eval report``: rebuild the HTML report and figures from run folders, without a model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.app import app
from cli.common import console, err_console, handle_errors

__all__ = ["report", "report_target"]


def report_target(out: Path) -> Path:
    """The HTML file ``--out`` names: ``<out>/report.html`` for a folder (existing, or a new
    name without a suffix or ending in a slash), else ``out`` itself."""
    from ersm_eval.schema import REPORT_HTML

    text = str(out)
    if out.is_dir() or text.endswith(("/", "\\")) or (not out.exists() and out.suffix == ""):
        return out / REPORT_HTML
    return out


@app.command()
@handle_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Output folders of deletion / occlusion / sparsity / compare runs.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o",
        help="HTML file to write, or a folder to write report.html into; figures go to a 'figures' folder beside it. "
             "A file not written by ersm-eval is never replaced.",
    )] = Path("report.html"),
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        path = build_report(runs, report_target(out), title=title)
    for warning in caught:
        err_console.print(f"[yellow]Warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    console.print(f"Wrote {path}", highlight=False)
