"""The README's quick start runs as written (on the small demo), and its demo section matches the code.

The quick start's bash block is run line by line in a fresh folder: ``make demo``
becomes the Makefile's own recipe, ``.venv/bin/`` this environment's scripts, and
``ERSM_DEMO_SMALL=1`` shrinks the demo (about 40 CPU seconds in all).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli.demo import DEMO_SETTINGS, SMALL_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    """The README text under ``## title``, up to the next ``## `` heading."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def bash_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks in ``text``: continuation lines joined, comments and blanks dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(line)
    return commands


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, with $(VENV) resolved to this environment."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)/bin/", f"{BIN}/"))
    return recipe


def runnable(command: str) -> list[str]:
    """A README command as this test runs it: `make demo` expanded, .venv/bin/ pointed at this environment."""
    if command.startswith("make "):
        return make_recipe(command.split()[1])
    return [command.replace(".venv/bin/", f"{BIN}/")]


def test_quick_start_runs_as_written(tmp_path):
    commands = bash_commands(section("Quick start"))
    assert commands[0] == "make demo"  # the checkpoints below exist only after the demo
    env = dict(os.environ, **{SMALL_ENV: "1", "OMP_NUM_THREADS": "1", "ERSM_EVAL_PROGRESS_SECONDS": "600"})
    for command in commands:
        for line in runnable(command):
            done = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"README command failed: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    # every path the quick start names exists afterwards
    named = {p for c in commands for p in re.findall(r"runs/[\w./-]+", c)}
    assert "runs/demo/checkpoints/ersm_full.pt" in named and "runs/demo/checkpoints/baseline.pt" in named
    for path in named:
        assert (tmp_path / path).exists(), path


def option_values(command: str) -> dict[str, str]:
    words = shlex.split(command)
    return {w[2:]: words[i + 1] for i, w in enumerate(words) if w.startswith("--") and i + 1 < len(words)}


def test_demo_section_matches_the_settings():
    text = section("The demo")
    train = [c for c in bash_commands(text) if " train " in c]
    assert len(train) == 1
    options = option_values(train[0])
    full = DEMO_SETTINGS["full"]
    names = {"image-size": "image_size", "num-classes": "num_classes", "n-train": "n_train", "n-test": "n_test",
             "spurious": "spurious", "epochs": "epochs", "batch-size": "batch_size", "lr": "lr", "alpha": "alpha",
             "beta": "beta", "tau": "tau", "init-keep": "init_keep"}
    assert set(names) <= set(options)
    for option, key in names.items():
        assert float(options[option]) == pytest.approx(float(full[key])), option
    assert "make demo" in section("The two commands")
    assert f"{full['image_size']} px" in text and f"{full['epochs']}, {full['batch_size']}" in text


def test_makefile_demo_writes_where_the_readme_says():
    recipe = " ".join(make_recipe("demo"))
    assert "demo --out runs/demo" in recipe
