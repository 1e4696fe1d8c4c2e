"""Options shared by several commands, error handling and progress bars.

The commands only parse options and call ersm_core / ersm_eval / reports; a
user's mistake (:class:`ersm_core.errors.ERSMError`) becomes one message on
stderr and exit code 2, Ctrl-C exit code 130, without a traceback.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ersm_core.errors import ConfigError, ERSMError

__all__ = [
    "console", "err_console", "handle_errors", "report_skipped", "write_report", "progress_bar", "parse_int_list", "parse_name_list",
    "Split", "Checkpoint", "Checkpoints", "DatasetName", "DataRoot", "SplitOpt", "Limit", "SubsetSeed", "BatchSize",
    "Workers", "Device", "Seeds", "Out", "Overwrite", "NoReport", "Cache", "SkipBadImages", "Quiet",
]

console = Console()
err_console = Console(stderr=True)


class Split(str, Enum):
    train = "train"
    test = "test"


Checkpoint = Annotated[Path, typer.Argument(help="Checkpoint file written by `ersm-eval train`.", show_default=False)]
Checkpoints = Annotated[list[Path], typer.Argument(help="One or more checkpoint files.", show_default=False)]
DatasetName = Annotated[str, typer.Option("--dataset", "-d", help="synthetic, cub, food101, pets or imagefolder.")]
DataRoot = Annotated[Optional[Path], typer.Option("--data-root", help="Folder holding the dataset (not needed for synthetic).")]
SplitOpt = Annotated[Split, typer.Option("--split", help="Dataset split to evaluate.")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="Use N images: a seeded, class-stratified subset (equal per class), the same in every command for the same N and --subset-seed.")]
SubsetSeed = Annotated[int, typer.Option("--subset-seed", help="Seed of the --limit subset (and of train's validation split).")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch (results do not depend on it).")]
Workers = Annotated[int, typer.Option("--workers", "-j", help="DataLoader worker processes (results do not depend on it).")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")]
Seeds = Annotated[str, typer.Option("--seeds", help="Comma-separated seeds for random orders / occluders, e.g. 0,1,2,3,4.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (written under a temporary name, then renamed).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty output folder.")]
NoReport = Annotated[bool, typer.Option("--no-report", help="Do not write report.html into the output folder.")]
Cache = Annotated[Optional[Path], typer.Option("--cache", help="Folder caching backbone features between runs (feature-level evaluations).")]
SkipBadImages = Annotated[bool, typer.Option("--skip-bad-images", help="Skip unreadable images (counted and listed) instead of stopping.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def handle_errors(func: Callable) -> Callable:
    """Turn user errors into one message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ERSMError as err:
            err_console.print(f"[bold red]Error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]Interrupted:[/] nothing was written under the output name.", highlight=False)
            raise typer.Exit(code=130) from None

    return wrapper


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` items; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def write_report(out_dir: Path) -> None:
    """report.html for one evaluation folder, from the tables just written into it.

    A report that cannot be built is a warning: the tables are the result.
    """
    from ersm_eval.schema import REPORT_HTML
    from reports import build_report, load_run

    try:
        build_report([load_run(out_dir)], out_dir / REPORT_HTML)
    except ERSMError as err:
        err_console.print(f"[yellow]Warning:[/] report.html not written: {err}", highlight=False)


def report_skipped(skipped: list[tuple[int, str]]) -> list[dict[str, object]]:
    """Gather the images skipped by ``--skip-bad-images`` from every process, print them once,
    and return them (sorted by dataset index) for summary.json."""
    from ersm_eval import distributed
    from ersm_eval.context import gather_skipped

    merged = gather_skipped(skipped)
    if merged and distributed.is_main():
        err_console.print(f"[yellow]Skipped {len(merged)} unreadable image(s):[/]", highlight=False)
        for item in merged[:20]:
            err_console.print(f"  index {item['index']}: {item['error']}", highlight=False, soft_wrap=True)
        if len(merged) > 20:
            err_console.print(f"  ... and {len(merged) - 20} more (all listed in summary.json)", highlight=False)
    return merged


def parse_int_list(text: str, option: str) -> list[int]:
    """'0,1,2' → [0, 1, 2]; anything else raises ConfigError naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def parse_name_list(text: str, option: str) -> list[str]:
    """'a,b' → ['a', 'b'] without duplicates, order kept."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise ConfigError(f"{option} needs at least one name")
    return names
