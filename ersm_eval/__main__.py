"""``python -m ersm_eval``: the ``ersm-eval`` command line, for environments without the console script.

This module is an entry point only; the library never imports it (the command line
is built on the library, not the other way round).
"""

from __future__ import annotations

__all__: list[str] = []


def main() -> None:
    """Run the ``ersm-eval`` app with every command registered, named as the console script."""
    from cli.main import app

    app(prog_name="ersm-eval")


if __name__ == "__main__":
    main()
