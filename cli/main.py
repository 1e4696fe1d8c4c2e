"""Entry point of the ``ersm-eval`` console script: the app with every command registered."""

from cli.app import app

# each module registers its command(s) on ``app`` when imported, in --help order
from cli import train  # noqa: E402,F401
from cli import deletion  # noqa: E402,F401
from cli import occlusion, sparsity  # noqa: E402,F401
from cli import report, compare, demo  # noqa: E402,F401
from cli import convert  # noqa: E402,F401
from cli import study  # noqa: E402,F401

__all__ = ["app"]

if __name__ == "__main__":
    app()
