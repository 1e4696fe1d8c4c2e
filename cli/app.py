"""The typer application object every command module registers on.

Usage errors found by click itself (an option value that is not a number, an unknown option, a
missing argument, an unreadable path) are printed as ONE line, like every other refusal
(docs/safety.md), instead of click's usage box: ``Error: <what is wrong>. Try '<command> --help'
for help.``, exit code 2. Help (``--help``, or no arguments at all) is printed as before.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer ≥ 0.20 carries its own copy of click: its exceptions are not the installed click's
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer, on the installed click
    import click  # type: ignore[no-redef]

__all__ = ["app", "OneLineErrorGroup", "usage_error_line"]


def usage_error_line(err: "click.exceptions.ClickException") -> str:
    """The one line printed for a click error: its message, then where to read the usage."""
    message = " ".join(err.format_message().split())
    if message and message[-1] not in ".!?":
        message += "."
    if isinstance(err, click.exceptions.UsageError):
        ctx = getattr(err, "ctx", None)
        path = ctx.command_path if ctx is not None else "ersm-eval"
        message += f" Try '{path} --help' for help."
    return f"Error: {message}"


def _print_one_line(err: "click.exceptions.ClickException") -> None:
    from rich.markup import escape

    from cli.common import err_console

    err_console.print(f"[bold red]Error:[/] {escape(usage_error_line(err)[len('Error: '):])}", markup=True,
                      highlight=False, soft_wrap=True)


def _is_help_request(err: "click.exceptions.ClickException") -> bool:
    """click's "no arguments: show the help" (NoArgsIsHelpError), which is help, not an error."""
    return type(err).__name__ == "NoArgsIsHelpError"


class OneLineErrorGroup(TyperGroup):
    """The ``ersm-eval`` group: click usage errors of the group and of its commands become one line.

    Parsing the group's own arguments happens in :meth:`make_context`, resolving the command and
    parsing its options (value conversion, path checks) in :meth:`invoke`; both turn a
    :class:`click.ClickException` into one line on stderr and ``click.exceptions.Exit`` with the
    error's code (2 for usage errors), which click's ``main`` turns into that exit status.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.ClickException as err:
            if _is_help_request(err):
                raise
            _print_one_line(err)
            raise typer.Exit(code=err.exit_code) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as err:
            if _is_help_request(err):
                raise
            _print_one_line(err)
            raise typer.Exit(code=err.exit_code) from None


app = typer.Typer(
    name="ersm-eval",
    cls=OneLineErrorGroup,
    help="Train and evaluate CNNs with Energy-Regularized Spatial Masking: deletion curves, "
    "occlusion stress tests, sparsity and mask statistics, figures and an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``--version``: the installed package's version, read from its metadata (imports no torch)."""
    if value:
        from ersm_core.versions import versions

        typer.echo(f"ersm-eval {versions()['ersm_eval']}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Keeps ``ersm-eval COMMAND`` a command group even while only one command is registered."""
