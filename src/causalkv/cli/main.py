"""Entry point of the `causalkv` command.

Each command group lives in its own module under `causalkv.cli` and exposes
`register(app)`; this module only assembles them, so that adding a command never
means editing another command's module.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="causalkv",
    help="causalkv: a sharded, replicated, causally consistent key-value store.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """causalkv: a sharded, replicated, causally consistent key-value store."""


# Modules that contribute commands; each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "causalkv.cli.serve",
    "causalkv.cli.dev",
    "causalkv.cli.check_command",
    "causalkv.cli.client_commands",
    "causalkv.cli.view_commands",
    "causalkv.cli.sim_command",
    "causalkv.cli.bench_command",
)


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(app)


def main() -> None:
    """Run the command line."""
    _register_commands()
    app()
