"""Entry point of the ``ersm-eval`` console script: the app with every command registered."""

from cli.app import app

# each module registers its command(s) on ``app`` when imported
from cli import train  # noqa: E402,F401

__all__ = ["app"]

if __name__ == "__main__":
    app()
