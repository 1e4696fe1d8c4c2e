"""The typer application object every command module registers on."""

import typer

__all__ = ["app"]

app = typer.Typer(
    name="ersm-eval",
    help="Train and evaluate CNNs with Energy-Regularized Spatial Masking: deletion curves, "
    "occlusion stress tests, sparsity and mask statistics, figures and an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main() -> None:
    """Keeps ``ersm-eval COMMAND`` a command group even while only one command is registered."""
