"""Progress without a terminal: plain, flushed lines at most every interval and at each task's end."""

import io

import pytest

from cli.common import progress_bar
from cli.progress import INTERVAL_ENV, ProgressDisplay, format_duration, plain_line


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class NotATerminal(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


def test_format_duration():
    assert format_duration(3725.2) == "1:02:05"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(float("nan")) == "-:--:--"


def test_plain_line_by_hand():
    # 40 of 120 batches in 16 s: 2.5 batches/s, 80 left -> 32 s
    line = plain_line("epoch 3/20", 40, 120, 16.0, "batches", "loss 1.204")
    assert line == "epoch 3/20: 40/120 batches (33%), 2.5 batches/s, elapsed 0:00:16, ETA 0:00:32 | loss 1.204"
    assert plain_line("x", 0, 10, 0.0) == "x: 0/10 (0%), - items/s, elapsed 0:00:00, ETA -:--:--"


def test_lines_at_most_every_interval_and_at_the_end():
    clock, out = FakeClock(), NotATerminal()
    with ProgressDisplay(interactive=False, stream=out, interval=30.0, clock=clock) as display:
        task = display.add_task("deletion (m)", total=100, unit="images")
        for _ in range(10):  # 10 images every 10 s
            clock.now += 10.0
            display.advance(task, 10, info="acc 50%")
        display.finish(task)
    lines = out.getvalue().splitlines()
    # the first advance writes (nothing written yet), then at 40 s, 70 s, 100 s; the end line at 100 s
    assert [line.split(":")[1].split()[0] for line in lines] == ["10/100", "40/100", "70/100", "100/100", "100/100"]
    assert lines[1] == "deletion (m): 40/100 images (40%), 1 images/s, elapsed 0:00:40, ETA 0:01:00 | acc 50%"
    assert lines[-1].endswith("ETA 0:00:00 | acc 50%")
    assert out.flushes >= len(lines)


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    clock, out = FakeClock(), NotATerminal()
    with ProgressDisplay(interactive=False, stream=out, clock=clock) as display:
        assert display.interval == 0.0
        task = display.add_task("t", total=3)
        for _ in range(3):
            display.advance(task)
    assert len(out.getvalue().splitlines()) == 3


def test_disabled_writes_nothing():
    out = NotATerminal()
    with ProgressDisplay(enabled=False, stream=out, interactive=False) as display:
        task = display.add_task("t", total=3)
        display.advance(task, 3)
        display.finish(task)
        display.message("hello")
    assert out.getvalue() == ""


def test_not_a_terminal_is_detected():
    assert ProgressDisplay(stream=NotATerminal()).interactive is False


def test_terminal_draws_rich_bars_with_eta():
    class Terminal(NotATerminal):
        def isatty(self):
            return True

    out = Terminal()
    with ProgressDisplay(stream=out) as display:
        assert display.interactive
        task = display.add_task("occlusion", total=4, info="x")
        display.advance(task, 4)
        display.finish(task)
    text = out.getvalue()
    assert "occlusion" in text and "4/4" in text and "eta" in text


def test_progress_bar_without_a_terminal_prints_lines(capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "1000")
    with progress_bar(5, "sparsity (m)") as advance:
        for _ in range(5):
            advance(1)
    lines = capsys.readouterr().err.splitlines()
    # one line at the first image, one at the end
    assert len(lines) == 2 and lines[0].startswith("sparsity (m): 1/5 images (20%)")
    assert lines[1].startswith("sparsity (m): 5/5 images (100%)") and "ETA 0:00:00" in lines[1]
