"""Options shared by several commands, error handling and progress bars.

The commands only parse options and call ersm_core / ersm_eval / reports; a
user's mistake (:class:`ersm_core.errors.ERSMError`) becomes one message on
stderr and exit code 2, Ctrl-C exit code 130 and ``kill`` (SIGTERM, e.g. of a
``nohup`` run, whose Ctrl-C is ignored) exit code 143, without a traceback and
after the same clean-up: no half-written output under its final name, locks released.
"""

from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console

from ersm_core.errors import ConfigError, ERSMError

__all__ = [
    "console", "err_console", "handle_errors", "Terminated", "check_common_options", "print_skipped", "bars", "write_report", "progress_bar", "parse_int_list", "parse_name_list",
    "option_values", "is_main", "print_notes",
    "Split", "Checkpoint", "Checkpoints", "DatasetName", "DataRoot", "SplitOpt", "Limit", "SubsetSeed", "BatchSize",
    "Workers", "Device", "Seeds", "MAX_SEED", "check_int_range", "max_workers", "Out", "Overwrite", "Resume", "print_resumed", "NoReport", "Cache", "SkipBadImages", "Quiet",
    "Randomization", "print_study_resumed",
]

def _console(stderr: bool = False) -> Console:
    """A rich console; written to a file or pipe (a ``nohup`` log) it is 140 columns wide
    instead of rich's 80, so result tables keep whole words (``COLUMNS`` still decides)."""
    import os
    import sys

    stream = sys.stderr if stderr else sys.stdout
    wide = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=140 if wide else None)


console = _console()
err_console = _console(stderr=True)


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
Resume = Annotated[bool, typer.Option(
    "--resume", help="Go on from the images an interrupted run of the same command finished (kept beside --out as "
    ".<out>.resume/); the tables equal an uninterrupted run's. Other options than the interrupted run's are refused.",
)]
NoReport = Annotated[bool, typer.Option("--no-report", help="Do not write report.html into the output folder.")]
Cache = Annotated[Optional[Path], typer.Option("--cache", help="Folder caching backbone features between runs (feature-level evaluations).")]
SkipBadImages = Annotated[bool, typer.Option("--skip-bad-images", help="Skip unreadable images (counted and listed) instead of stopping.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Randomization = Annotated[bool, typer.Option(
    "--randomization/--no-randomization",
    help="Also check that each map depends on what the model learned: map_randomization.csv, the map's Spearman "
    "correlation with itself after re-initializing the head, the spatial module and the backbone's last stage.",
)]


MAX_SEED = 2**32 - 1  # numpy's np.random.seed / RandomState take 0..2**32-1; torch and default_rng take more
MAX_BATCH_SIZE = 4096  # images per batch; results do not depend on it, memory does
MAX_EPOCHS = 100_000
MAX_LIMIT = 10**9  # --limit: more images than any dataset holds


def max_workers() -> int:
    """DataLoader worker processes allowed here: 4 per CPU core, at most 64."""
    import os

    return max(1, min(64, 4 * (os.cpu_count() or 1)))


# option name -> (flag, lowest, highest); None: unbounded on that side. Checked by name in every command.
_INT_RANGES: dict[str, tuple[str, int | None, int | None]] = {
    "batch_size": ("--batch-size", 1, MAX_BATCH_SIZE),
    "workers": ("--workers", 0, None),  # the top is max_workers(), which depends on the machine
    "limit": ("--limit", 1, MAX_LIMIT),
    "seed": ("--seed", 0, MAX_SEED),
    "subset_seed": ("--subset-seed", 0, MAX_SEED),
    "fill_seed": ("--fill-seed", 0, MAX_SEED),
    "epochs": ("--epochs", 1, MAX_EPOCHS),
}


def check_int_range(value: object, option: str, low: int | None, high: int | None, hint: str = "") -> None:
    """Raise ConfigError naming ``option`` when the integer ``value`` lies outside [low, high]."""
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return
    if low is not None and value < low:
        raise ConfigError(f"{option} must be at least {low}, got {value}{hint}")
    if high is not None and value > high:
        raise ConfigError(f"{option} must be at most {high}, got {value}{hint}")


def check_common_options(options: dict[str, object]) -> None:
    """Range-check the options several commands share, by parameter name, before any work.

    batch_size 1..4096, workers 0..max_workers(), limit ≥ 1 when given, epochs 1..100000, seeds
    (--seed, --subset-seed, --seeds lists) integers in 0..2**32-1, device one that exists here.
    Raises ConfigError naming the option.
    """
    for name, (option, low, high) in _INT_RANGES.items():
        hint = " (a seed is a number from 0 to 4294967295)" if name.endswith("seed") else ""
        check_int_range(options.get(name), option, low, high, hint)
    workers, most = options.get("workers"), max_workers()
    if isinstance(workers, int) and not isinstance(workers, bool) and workers > most:
        raise ConfigError(f"--workers must be at most {most} on this machine (4 per CPU core, at most 64), "
                          f"got {workers}; 0 to {min(most, 8)} is plenty for most datasets")
    for name, value in options.items():
        if name.endswith("seeds") and isinstance(value, str):
            parse_int_list(value, "--" + name.replace("_", "-"))
    device = options.get("device")
    if isinstance(device, str):
        from ersm_core.device import select_device

        select_device(device)
    check_launch_environment()


_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def check_launch_environment(env: dict[str, str] | None = None) -> None:
    """The variables torchrun sets, checked before any work: whole numbers, RANK < WORLD_SIZE,
    and for WORLD_SIZE > 1 every variable the rendezvous needs (else it fails or waits for
    processes that never come). Raises ConfigError naming the variable."""
    import os

    env = os.environ if env is None else env
    values = {}
    for name in _LAUNCH_VARIABLES:
        text = env.get(name, "").strip()
        if not text:
            continue
        if not text.isdigit():
            raise ConfigError(f"environment variable {name}={env[name]!r} is not a whole number; it is set by torchrun: "
                              f"unset it (unset {name}) or launch with torchrun")
        values[name] = int(text)
    world = values.get("WORLD_SIZE", 1)
    if world > 1:
        missing = [n for n in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(n, "").strip()]
        if missing:
            raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: several processes are started by "
                              "torchrun (torchrun --nproc-per-node N -m cli.main ...); for one process, unset WORLD_SIZE")
        if values["RANK"] >= world:
            raise ConfigError(f"RANK={values['RANK']} must be below WORLD_SIZE={world}; launch with torchrun")


def handle_errors(func: Callable) -> Callable:
    """Turn user errors into one message and a non-zero exit; check the shared options first.

    Output locks taken by the command (``ersm_eval.output``) are released however it ends.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _DEPTH[0] += 1  # commands may call commands (demo → train): locks go when the outermost ends
        previous = _catch_sigterm() if _DEPTH[0] == 1 else None
        try:
            check_common_options(kwargs)
            return func(*args, **kwargs)
        except ERSMError as err:
            message = _escape(" ".join(str(err).split()))  # one line, printed literally
            err_console.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except Terminated:
            err_console.print("[bold red]Stopped (SIGTERM):[/] nothing was written under the output name.", highlight=False)
            raise typer.Exit(code=143) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]Interrupted:[/] nothing was written under the output name.", highlight=False)
            raise typer.Exit(code=130) from None
        finally:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                _release_output_locks()
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

    return wrapper


_DEPTH = [0]  # nesting of handle_errors-wrapped calls


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds (and cleans up) as Ctrl-C does."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _catch_sigterm():
    """Turn SIGTERM into :class:`Terminated` for the command's duration; the previous handler, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _escape(text: str) -> str:
    """A message printed literally: rich would read ``[...]`` in paths or names as markup."""
    from rich.markup import escape

    return escape(text)


def _release_output_locks() -> None:
    import sys

    output = sys.modules.get("ersm_eval.output")  # only loaded when a command wrote (or checked) an output
    if output is not None:
        output.release_locks()


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Progress over ``total`` images; yields ``advance(n)``.

    A rich bar with ETA on a terminal, plain flushed lines (at most every 30 s, and at
    the end) otherwise: see :class:`cli.progress.ProgressDisplay`.
    """
    from cli.progress import ProgressDisplay

    with ProgressDisplay(enabled=enabled) as display:
        task = display.add_task(description, total=total, unit="images")
        yield lambda n: display.advance(task, n)
        display.finish(task)


def bars(quiet: bool) -> Callable[[int, str], Any]:
    """The progress callable the pipelines take: a bar per evaluation, on rank 0 only, none with ``--quiet``."""
    return lambda total, description: progress_bar(total, description, enabled=not quiet and is_main())


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


def print_resumed(run: Any) -> None:
    """Say how many images of a pipeline's run an interrupted run had finished (``--resume``), once."""
    if run.resumed_images and is_main():
        of = f" of {run.result.summary.n_images}" if run.result is not None else ""
        err_console.print(f"Resumed {run.resumed_images}{of} image(s) that an interrupted run had finished; "
                          "evaluated the rest.", highlight=False)


def print_study_resumed(run, what: str = "study") -> None:
    """Say how many images an interrupted ``what`` (study, comparison) had finished (``--resume``), once; with
    several backbone bundles an image counts once per bundle, as the progress bar counts it."""
    if not run.resumed_images:
        return
    passes = len(run.bundles)
    total = run.n_images * passes
    per = f" ({run.n_images} images × {passes} backbone passes)" if passes > 1 else ""
    err_console.print(f"Resumed {run.resumed_images} of {total} image(s){per} that an interrupted {what} had "
                      "finished; evaluated the rest.", highlight=False)


def print_skipped(skipped: list[dict[str, object]]) -> None:
    """Print the images skipped by ``--skip-bad-images`` (all processes', sorted by index) once."""
    if skipped and is_main():
        err_console.print(f"[yellow]Skipped {len(skipped)} unreadable image(s):[/]", highlight=False)
        for item in skipped[:20]:
            err_console.print(f"  index {item['index']}: {item['error']}", highlight=False, soft_wrap=True)
        if len(skipped) > 20:
            err_console.print(f"  ... and {len(skipped) - 20} more (all listed in summary.json)", highlight=False)


def parse_int_list(text: str, option: str) -> list[int]:
    """'0,1,2' → [0, 1, 2]; anything else raises ConfigError naming the option.

    Seed lists (an option ending in ``seeds``) take integers in 0..2**32-1, index lists
    (``--gallery-indices``) integers in 0..2**63-1.
    """
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    high = MAX_SEED if option.endswith("seeds") else 2**63 - 1 if option in _NON_NEGATIVE else None
    if high is not None:
        bad = [v for v in values if not 0 <= v <= high]
        if bad:
            raise ConfigError(f"{option} takes non-negative integers up to {high}, got {bad[0]}")
    return values


_NON_NEGATIVE = ("--seeds", "--gallery-indices")  # lists whose values seed generators or index datasets


def parse_name_list(text: str, option: str) -> list[str]:
    """'a,b' → ['a', 'b'] without duplicates, order kept."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise ConfigError(f"{option} needs at least one name")
    return names


def option_values(values: dict[str, Any]) -> dict[str, Any]:
    """A command's options as summary.json records them: choices by value, paths as text."""
    return {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else
                [str(p) for p in v] if isinstance(v, list) else v) for k, v in values.items()}


def is_main() -> bool:
    """This process writes and prints: a single process, or rank 0 under torchrun."""
    from ersm_eval import distributed

    return distributed.is_main()


def print_notes(notes: list[str], prefix: str = "Note:") -> None:
    """Each note on its own line, literally."""
    for note in notes:
        console.print(f"{prefix} {note}", highlight=False)
