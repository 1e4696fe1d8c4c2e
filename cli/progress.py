"""Progress of long loops, for a person at a terminal and for a log file.

On a terminal, rich bars with the count, rate, elapsed time and ETA. Without one
(``nohup ersm-eval train ... > log &``, a batch job, a pipe), rich draws nothing,
so :class:`ProgressDisplay` writes plain lines instead, like pip or tqdm with
``mininterval``: at most one line every ``interval`` seconds (default 30, or the
``ERSM_EVAL_PROGRESS_SECONDS`` environment variable), plus one when a task ends,
each flushed at once::

    epoch 3/20: 40/120 batches (33%), 2.51 batches/s, elapsed 0:00:16, ETA 0:00:32 | loss 1.204 acc 41.0%

Nothing here imports torch; the commands pass numbers in.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

__all__ = ["ProgressDisplay", "PLAIN_INTERVAL_S", "INTERVAL_ENV", "format_duration", "plain_line"]

PLAIN_INTERVAL_S = 30.0  # seconds between plain progress lines
INTERVAL_ENV = "ERSM_EVAL_PROGRESS_SECONDS"  # overrides PLAIN_INTERVAL_S (tests, impatient users)


def format_duration(seconds: float) -> str:
    """``3725.2`` → ``"1:02:05"``; unknown (NaN/inf/negative) → ``"-:--:--"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def plain_line(description: str, done: int, total: int | None, elapsed: float, unit: str = "", info: str = "") -> str:
    """One progress line: description, done/total (percent), rate, elapsed, ETA, then ``info``.

    The ETA assumes the remaining items go at the average rate so far.
    """
    unit_text = f" {unit}" if unit else ""
    rate = done / elapsed if elapsed > 0 else float("nan")
    parts = [f"{description}: {done}/{total}{unit_text}" if total else f"{description}: {done}{unit_text}"]
    if total:
        parts[0] += f" ({100 * done / total:.0f}%)"
    rate_text = f"{rate:.3g}" if math.isfinite(rate) else "-"
    parts.append(f"{rate_text}{unit_text or ' items'}/s")
    parts.append(f"elapsed {format_duration(elapsed)}")
    if total:
        eta = (total - done) / rate if math.isfinite(rate) and rate > 0 else (0.0 if done >= total else float("nan"))
        parts.append(f"ETA {format_duration(eta)}")
    line = ", ".join(parts)
    return f"{line} | {info}" if info else line


@dataclass
class _Task:
    description: str
    total: int | None
    unit: str
    started: float
    done: int = 0
    info: str = ""
    finished: bool = False
    rich_id: object = field(default=None)


class ProgressDisplay:
    """Progress of one or more tasks: rich bars on a terminal, plain flushed lines otherwise.

    Use as a context manager::

        with ProgressDisplay() as display:
            task = display.add_task("deletion (model)", total=len(images), unit="images")
            for batch in batches:
                ...
                display.advance(task, len(batch))
            display.finish(task)

    Args:
        enabled: False shows nothing (``--quiet``).
        interactive: force bars (True) or plain lines (False); None asks whether ``stream`` is a terminal.
        stream: where plain lines go (default: ``sys.stderr`` at the time of writing).
        interval: seconds between plain lines; None reads ``ERSM_EVAL_PROGRESS_SECONDS``, else 30.
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        enabled: bool = True,
        interactive: bool | None = None,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._stream = stream
        self.clock = clock
        if interval is None:
            try:
                interval = float(os.environ.get(INTERVAL_ENV, PLAIN_INTERVAL_S))
            except ValueError:
                interval = PLAIN_INTERVAL_S
        self.interval = max(0.0, interval)
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self._tasks: list[_Task] = []
        self._last_line = -math.inf
        self._bar = None

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    # -- context ----------------------------------------------------------------------
    def __enter__(self) -> "ProgressDisplay":
        if self.enabled and self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    # -- tasks ------------------------------------------------------------------------
    def add_task(self, description: str, total: int | None, unit: str = "", info: str = "") -> int:
        """Start a task of ``total`` items (None: unknown); returns its id."""
        task = _Task(description, total, unit, self.clock(), info=info)
        if self._bar is not None:
            task.rich_id = self._bar.add_task(description, total=total, info=info)
        self._tasks.append(task)
        return len(self._tasks) - 1

    def advance(self, task_id: int, n: int = 1, info: str | None = None) -> None:
        """``n`` more items of the task done; ``info`` replaces the text shown after the numbers."""
        task = self._tasks[task_id]
        task.done += n
        if info is not None:
            task.info = info
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(task.rich_id, advance=n, info=task.info)
            return
        now = self.clock()
        if now - self._last_line >= self.interval:
            self._write(task, now)

    def update(self, task_id: int, info: str) -> None:
        """Change the text shown after the task's numbers (no line is written for it)."""
        task = self._tasks[task_id]
        task.info = info
        if self._bar is not None:
            self._bar.update(task.rich_id, info=info)

    def finish(self, task_id: int, info: str | None = None) -> None:
        """End the task; in plain mode always writes its final line."""
        task = self._tasks[task_id]
        if info is not None:
            task.info = info
        if task.finished:
            return
        task.finished = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(task.rich_id, info=task.info)
            return
        self._write(task, self.clock())

    def message(self, text: str) -> None:
        """A line of its own (above the bars on a terminal)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _write(self, task: _Task, now: float) -> None:
        self._last_line = now
        line = plain_line(task.description, task.done, task.total, now - task.started, task.unit, task.info)
        print(line, file=self.stream, flush=True)
