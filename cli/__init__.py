"""The ``ersm-eval`` command-line interface (typer)."""
