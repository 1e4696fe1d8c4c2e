"""``ersm-eval report``: rebuild the HTML report and figures from run folders, without a model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.app import app
from cli.common import console, err_console, handle_errors

__all__ = ["report", "report_target", "check_report_out"]


def report_target(out: Path) -> Path:
    """The HTML file ``--out`` names: ``<out>/report.html`` for a folder (existing, or a new
    name without a suffix or ending in a slash), else ``out`` itself."""
    from ersm_eval.schema import REPORT_HTML

    text = str(out)
    if out.is_dir() or text.endswith(("/", "\\")) or (not out.exists() and out.suffix == ""):
        return out / REPORT_HTML
    return out


def check_report_out(out: Path, run_dirs: list[Path]) -> Path:
    """The report's HTML file; refused (ConfigError) when it, or its figures folder, is or lies inside a
    run folder given as input, or would replace one: a report never writes into what it reads."""
    from ersm_core.errors import ConfigError
    from ersm_eval.output import check_name_length

    target = report_target(out)
    check_name_length(target, "file")
    html, figures = _resolved(target), _resolved(target.parent / "figures")
    for run in run_dirs:
        folder = _resolved(run)
        inside = html == folder or folder in html.parents or figures == folder or folder in figures.parents
        if inside or folder in (html, figures) or html in folder.parents or figures in folder.parents:
            raise ConfigError(
                f"--out {out} would write {'into' if inside else 'over'} the run folder {run}, which this report reads; "
                f"write the report outside every run folder, e.g. --out {Path('reports') / (folder.name + '.html')}"
            )
    return target


def _resolved(path: Path) -> Path:
    import os

    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


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

    target = check_report_out(out, run_dirs)  # before anything is read
    runs = [load_run(d) for d in run_dirs]
    if by_checkpoint:
        runs = combine_by_checkpoint(runs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        path = build_report(runs, target, title=title)
    for warning in caught:
        err_console.print(f"[yellow]Warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    console.print(f"Wrote {path}", highlight=False)
