"""``causalkv get / put / delete / ls``: the data commands, and what every client command shares.

Consecutive commands are causal: each one loads the session from a file
(``.causalkv-session`` in the current directory, or ``--session-file``), carries
it, and saves what it learned, so ``causalkv put k v`` followed by
``causalkv get k`` reads the value written, whichever replicas serve them.

Output is meant for people on a terminal (colour, tables) and for scripts
otherwise: piped output is plain text (``key<TAB>value`` lines), and ``--json``
prints one JSON document on every command.

Exit status: 0 success, 1 key not found, 2 bad input, 3 the cluster could not
serve the request (unavailable, dependency timeout, view conflict, ...).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from causalkv.client import (
    BadRequest,
    CausalKVError,
    Client,
    ClientSettings,
    KeyNotFound,
    Session,
    parse_addresses,
)

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
EXIT_CLUSTER = 3

DEFAULT_NODES = "127.0.0.1:8081"
DEFAULT_SESSION_FILE = ".causalkv-session"
VALUE_CHARS_SHOWN_MAX = 80

NodesOption = Annotated[
    str,
    typer.Option(
        "--nodes",
        "-n",
        envvar="CAUSALKV_NODES",
        help="Seed nodes, comma-separated host:port; the client learns the rest from the view.",
        show_envvar=True,
    ),
]
SessionFileOption = Annotated[
    Path,
    typer.Option(
        "--session-file",
        envvar="CAUSALKV_SESSION_FILE",
        help="File holding the causal session shared by consecutive commands.",
        show_envvar=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds to wait for one node's answer."),
]
ClientTokenOption = Annotated[
    str | None,
    typer.Option(
        "--client-token",
        envvar="CAUSALKV_CLIENT_TOKEN",
        help="Bearer token for data requests, if the nodes require one.",
        show_envvar=True,
    ),
]


# -- output ------------------------------------------------------------------------------------------


class Output:
    """Where a command writes: JSON, a rich terminal, or plain text for pipes."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def fancy(self) -> bool:
        """True on a terminal (tables and colour); false when piped or in JSON mode."""
        return not self.json_mode and self.console.is_terminal

    def json(self, document: object) -> None:
        """Print ``document`` as one line of JSON."""
        typer.echo(msgspec.json.encode(document).decode())

    def text(self, text: str, style: str | None = None) -> None:
        """Print a line (styled on a terminal, plain otherwise)."""
        if self.fancy and style:
            self.console.print(Text(text, style=style))
        else:
            typer.echo(text)

    def note(self, text: str, style: str = "dim") -> None:
        """A remark for people, on stderr (kept out of pipes and JSON)."""
        if self.errors.is_terminal:
            self.errors.print(Text(text, style=style))
        else:
            typer.echo(text, err=True)

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        title: str | None = None,
        styles: Sequence[str | None] | None = None,
    ) -> None:
        """A table on a terminal; tab-separated lines with a header otherwise."""
        if self.fancy:
            table = Table(title=title, title_justify="left", header_style="bold")
            for column in columns:
                numeric = column in NUMERIC_COLUMNS
                table.add_column(column, justify="right" if numeric else "left", overflow="fold")
            for position, row in enumerate(rows):
                style = styles[position] if styles is not None else None
                table.add_row(*row, style=style)
            self.console.print(table)
            return
        if title:
            typer.echo(f"# {title}")
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(escape_field(cell) for cell in row))


NUMERIC_COLUMNS = frozenset(
    {
        "id",
        "epoch",
        "keys",
        "live",
        "tombstones",
        "waiting",
        "forwarded",
        "ping ms",
        "uptime s",
        "lamport",
    }
)


def escape_field(text: str) -> str:
    """Backslash-escape tabs, newlines and backslashes, so one record stays on one line."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def shorten(text: str, limit: int = VALUE_CHARS_SHOWN_MAX) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis if cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fail(output: Output, message: str, code: int, kind: str = "error") -> NoReturn:
    """Report an error (JSON on stdout in JSON mode, always a line on stderr) and exit."""
    if output.json_mode:
        output.json({"error": message, "kind": kind})
    output.note(f"causalkv: {message}", style="bold red")
    raise typer.Exit(code)


@contextlib.contextmanager
def reporting_errors(output: Output) -> Iterator[None]:
    """Turn client errors into a message and the documented exit status."""
    try:
        yield
    except KeyNotFound as error:
        fail(output, str(error), EXIT_NOT_FOUND, "not-found")
    except BadRequest as error:
        fail(output, str(error), EXIT_BAD_INPUT, "bad-request")
    except CausalKVError as error:
        kind = type(error).__name__
        fail(output, f"{kind}: {error}", EXIT_CLUSTER, kind)


# -- sessions and clients ----------------------------------------------------------------------------


def load_session(path: Path) -> Session:
    """The session saved in ``path`` (a fresh one if the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Session()
    except OSError as error:
        raise BadRequest(f"cannot read session file {path}: {error.strerror or error}") from error
    try:
        return Session.from_export(text)
    except BadRequest as error:
        raise BadRequest(f"session file {path} is not a causalkv session ({error})") from error


def save_session(path: Path, session: Session) -> None:
    """Save ``session`` merged with what the file holds now (another command may have run).

    Written to a temporary file and renamed, so a reader never sees half a session.
    """
    with contextlib.suppress(BadRequest):
        session = session | load_session(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(session.export() + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise BadRequest(f"cannot save session file {path}: {error.strerror or error}") from error


def client_settings(
    timeout_s: float, client_token: str | None = None, cluster_secret: str | None = None
) -> ClientSettings:
    """Settings for a command: the data timeout and tokens given on the command line."""
    return ClientSettings(
        timeout_s=timeout_s,
        probe_timeout_s=min(2.0, timeout_s),
        client_token=client_token,
        cluster_secret=cluster_secret,
    )


@contextlib.contextmanager
def session_client(
    nodes: str, session_file: Path, timeout_s: float, client_token: str | None
) -> Iterator[Client]:
    """A client continuing the session in ``session_file``; saves the session afterwards."""
    session = load_session(session_file)
    before = session.export()
    client = Client(
        parse_addresses(nodes), session, settings=client_settings(timeout_s, client_token)
    )
    try:
        yield client
    finally:
        client.close()
        if session.export() != before:
            save_session(session_file, session)


def read_value(value: str | None) -> str:
    """The value argument, or standard input for ``-`` or no argument.

    One trailing newline of standard input is dropped, as shell command
    substitution does, so ``echo hello | causalkv put k`` stores ``hello``.
    """
    if value is not None and value != "-":
        return value
    if sys.stdin.isatty():
        raise BadRequest("give a value, or pipe one in (use '-' to read standard input)")
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


# -- commands ----------------------------------------------------------------------------------------


def get(
    key: Annotated[str, typer.Argument(help="The key to read.")],
    siblings: Annotated[
        bool, typer.Option("--siblings", help="Also show concurrent versions of the key.")
    ] = False,
    nodes: NodesOption = DEFAULT_NODES,
    session_file: SessionFileOption = Path(DEFAULT_SESSION_FILE),
    timeout: TimeoutOption = 30.0,
    client_token: ClientTokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the value of KEY (exit status 1 if it has none)."""
    output = Output(json_output)
    with (
        reporting_errors(output),
        session_client(nodes, session_file, timeout, client_token) as client,
    ):
        reading = client.fetch(key, siblings=siblings)
    sibling_rows = [
        {"value": sibling.value, "writer": sibling.writer, "lamport": sibling.lamport}
        for sibling in reading.siblings
    ]
    if output.json_mode:
        document: dict[str, Any] = {
            "key": key,
            "found": reading.found,
            "value": reading.value,
            "node": reading.node,
        }
        if siblings:
            document["siblings"] = sibling_rows
        output.json(document)
    elif reading.value is not None:
        typer.echo(reading.value)
    if siblings and not output.json_mode and reading.siblings:
        output.table(
            ["value", "writer", "lamport"],
            [
                [
                    "(deleted)" if row["value"] is None else shorten(str(row["value"])),
                    str(row["writer"]),
                    str(row["lamport"]),
                ]
                for row in sibling_rows
            ],
            title=f"{len(sibling_rows)} version{'' if len(sibling_rows) == 1 else 's'} of {key!r}",
        )
    if not reading.found:
        output.note(f"causalkv: key not found: {key!r}", style="yellow")
        raise typer.Exit(EXIT_NOT_FOUND)


def put(
    key: Annotated[str, typer.Argument(help="The key to write.")],
    value: Annotated[
        str | None,
        typer.Argument(
            help="The value; '-' or nothing reads standard input (minus one final newline)."
        ),
    ] = None,
    nodes: NodesOption = DEFAULT_NODES,
    session_file: SessionFileOption = Path(DEFAULT_SESSION_FILE),
    timeout: TimeoutOption = 30.0,
    client_token: ClientTokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write VALUE to KEY."""
    output = Output(json_output)
    with reporting_errors(output):
        text = read_value(value)
        with session_client(nodes, session_file, timeout, client_token) as client:
            client.put(key, text)
            shard = client.shard_for(key)
    if output.json_mode:
        output.json({"key": key, "ok": True, "shard": shard})
    else:
        output.text(f"stored {key!r} (shard {shard})", style="green")


def delete(
    key: Annotated[str, typer.Argument(help="The key to delete.")],
    nodes: NodesOption = DEFAULT_NODES,
    session_file: SessionFileOption = Path(DEFAULT_SESSION_FILE),
    timeout: TimeoutOption = 30.0,
    client_token: ClientTokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete KEY (exit status 1 if it had no value)."""
    output = Output(json_output)
    with (
        reporting_errors(output),
        session_client(nodes, session_file, timeout, client_token) as client,
    ):
        deleted = client.delete(key)
    if output.json_mode:
        output.json({"key": key, "deleted": deleted})
    elif deleted:
        output.text(f"deleted {key!r}", style="green")
    if not deleted:
        output.note(f"causalkv: key not found: {key!r}", style="yellow")
        raise typer.Exit(EXIT_NOT_FOUND)


def ls(
    shard: Annotated[
        str | None, typer.Option("--shard", "-s", help="List only this shard (by name).")
    ] = None,
    keys_only: Annotated[bool, typer.Option("--keys", help="Print keys only.")] = False,
    nodes: NodesOption = DEFAULT_NODES,
    session_file: SessionFileOption = Path(DEFAULT_SESSION_FILE),
    timeout: TimeoutOption = 30.0,
    client_token: ClientTokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List keys and values of every shard (or of one), sorted by key."""
    output = Output(json_output)
    with (
        reporting_errors(output),
        session_client(nodes, session_file, timeout, client_token) as client,
    ):
        listings = client.listings()
    if shard is not None:
        listings = [listing for listing in listings if listing.shard == shard]
        if not listings:
            fail(output, f"the view has no shard named {shard!r}", EXIT_BAD_INPUT, "bad-request")
    rows = sorted(
        (key, value, listing.shard) for listing in listings for key, value in listing.items.items()
    )
    if output.json_mode:
        output.json(
            {
                "items": {key: value for key, value, _ in rows},
                "shards": {
                    listing.shard: {"node": listing.node, "count": len(listing.items)}
                    for listing in listings
                },
            }
        )
        return
    if output.fancy:
        counts = ", ".join(f"{listing.shard}: {len(listing.items)}" for listing in listings)
        columns = ["key", "shard"] if keys_only else ["key", "value", "shard"]
        output.table(
            columns,
            [
                [key, shard_name] if keys_only else [key, shorten(value), shard_name]
                for key, value, shard_name in rows
            ],
            title=f"{len(rows)} key{'' if len(rows) == 1 else 's'} ({counts})",
        )
        return
    for key, value, _ in rows:
        typer.echo(
            escape_field(key) if keys_only else f"{escape_field(key)}\t{escape_field(value)}"
        )


def register(app: typer.Typer) -> None:
    """Add ``get``, ``put``, ``delete`` and ``ls`` to ``app``."""
    app.command("get")(get)
    app.command("put")(put)
    app.command("delete")(delete)
    app.command("ls")(ls)
