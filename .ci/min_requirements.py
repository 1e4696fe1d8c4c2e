"""Print the oldest allowed version of each dependency, one ``name==version`` a line.

Reads the ``>=`` lower bounds of ``[project] dependencies`` (and the ``test`` extra) in
pyproject.toml, so the versions ``make test-min`` installs are the bounds the project
declares and cannot drift from them. torch and torchvision are left out: the test
environment always uses the pinned releases (Makefile ``TORCH``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SKIP = {"torch", "torchvision"}


def floors(pyproject: Path) -> list[str]:
    """``name==lower bound`` for every dependency with a ``>=`` bound, in file order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    specs = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
    out = []
    for spec in specs:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*(.*)$", spec)
        name, constraint = match.group(1), match.group(2)
        low = re.search(r">=\s*([0-9][^,;\s]*)", constraint)
        if low and name.lower() not in SKIP:
            out.append(f"{name}=={low.group(1)}")
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    print("\n".join(floors(path)))
