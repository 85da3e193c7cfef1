"""``causalkv check HISTORY.jsonl [--json]``: judge a recorded history.

Exit status: 0 if the history is valid, 1 if the checker found violations
(the report says which), 2 if the file cannot be read or is malformed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer

from causalkv.check import MalformedHistoryError, check_history, load_history

EXIT_VALID = 0
EXIT_VIOLATIONS = 1
EXIT_MALFORMED = 2


def register(app: typer.Typer) -> None:
    """Add the ``check`` command to ``app``."""
    app.command("check")(check)


def check(
    history: Annotated[Path, typer.Argument(help="History file: JSON lines, see docs/checker.md.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the full result as JSON instead of a report.")
    ] = False,
    limit: Annotated[
        int, typer.Option(help="Verdicts shown per kind in the text report.", min=1)
    ] = 20,
) -> None:
    """Check a history for causal consistency, convergence and lost writes."""
    try:
        loaded = load_history(history)
    except (MalformedHistoryError, OSError) as error:
        reason = (
            str(error)
            if isinstance(error, MalformedHistoryError)
            else f"cannot read it: {error.strerror or error}"
        )
        if json_output:
            report = {"ok": False, "malformed": True, "error": reason}
            typer.echo(msgspec.json.encode(report).decode())
        typer.echo(f"causalkv check: malformed history {history}: {reason}", err=True)
        raise typer.Exit(EXIT_MALFORMED) from None
    result = check_history(loaded)
    if json_output:
        typer.echo(result.to_json().decode())
    else:
        typer.echo(result.render(limit_per_kind=limit), nl=False)
    raise typer.Exit(EXIT_VALID if result.ok else EXIT_VIOLATIONS)
