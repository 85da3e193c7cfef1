"""The history file format: one JSON object per line, decoded with msgspec.

A line records either the invocation of an operation by a client process or its
completion::

    {"process": "p1", "type": "invoke", "f": "put", "key": "k", "value": "v1",
     "time_s": 0.25, "node": "n1"}
    {"process": "p1", "type": "ok", "f": "put", "key": "k", "value": null,
     "time_s": 0.31, "node": "n1"}

Optional fields: ``final`` (final reads after convergence), ``covers`` (keys
whose absence from a listing counts as a "not found" read) and ``shard`` (the
shard a listing enumerates). Unknown fields are ignored so that recorders may
add information the checker does not use yet; everything else is validated
strictly (types, required fields), and errors name the line number.

See ``docs/checker.md`` for the full description of the format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Literal

import msgspec

LineType = Literal["invoke", "ok", "fail", "info"]
"""Whether a line starts an operation or reports how it ended."""

Function = Literal["put", "get", "delete", "list"]
"""The operation a client performed."""

LineValue = str | dict[str, str] | None
"""A put's value, a get's result, or a listing (key to value)."""

COMPLETION_TYPES: Final[frozenset[str]] = frozenset({"ok", "fail", "info"})
READ_FUNCTIONS: Final[frozenset[str]] = frozenset({"get", "list"})
WRITE_FUNCTIONS: Final[frozenset[str]] = frozenset({"put", "delete"})


class MalformedHistoryError(ValueError):
    """The history cannot be judged: a line is invalid or a precondition fails.

    ``line_number`` is the 1-based line the problem was found on (``None`` when
    the problem is not tied to a line, e.g. an unreadable file).
    """

    def __init__(self, message: str, line_number: int | None = None) -> None:
        self.line_number = line_number
        self.reason = message
        super().__init__(message if line_number is None else f"line {line_number}: {message}")


class HistoryLine(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One line of a history file."""

    process: str
    type: LineType
    f: Function
    key: str | None
    value: LineValue
    time_s: float
    node: str
    final: bool = False
    covers: tuple[str, ...] | None = None
    shard: str | None = None


_DECODER: Final = msgspec.json.Decoder(HistoryLine)
_ENCODER: Final = msgspec.json.Encoder()


def decode_line(data: bytes | str, line_number: int) -> HistoryLine:
    """Decode one line, raising `MalformedHistoryError` naming ``line_number``."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as error:
        raise MalformedHistoryError(f"invalid history line: {error}", line_number) from None
    except msgspec.DecodeError as error:
        raise MalformedHistoryError(f"not valid JSON: {error}", line_number) from None


def decode_lines(lines: Iterable[bytes | str]) -> Iterator[tuple[int, HistoryLine]]:
    """Decode JSON lines into ``(line number, line)`` pairs, skipping blank lines."""
    for line_number, data in enumerate(lines, start=1):
        if not data.strip():
            continue
        yield line_number, decode_line(data, line_number)


def encode_line(line: HistoryLine) -> bytes:
    """Encode one line as JSON, without the trailing newline."""
    return _ENCODER.encode(line)
