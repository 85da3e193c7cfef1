"""Operations: invocation lines paired with their completions, and validation.

`build_history` turns decoded lines into a `History`, a tuple of `Operation`s
in invocation order. It enforces everything the checker relies on, raising
`MalformedHistoryError` (with line numbers) otherwise:

* each process has at most one operation in flight, and each completion line
  matches the pending invocation of its process (same ``f`` and key);
* keys, values and optional fields have the shapes their function requires
  (a put writes a string, a delete writes null, a list has no key, an ok list
  returns an object of strings, ``covers``/``shard`` only on lists, ``final``
  only on reads);
* put values are unique per key, the precondition that lets a read name the
  write it read from.

Invocations that never complete become operations with status ``"pending"``,
which the checker treats exactly like ``"info"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from causalkv.check.format import (
    READ_FUNCTIONS,
    Function,
    HistoryLine,
    MalformedHistoryError,
)

OperationStatus = Literal["ok", "fail", "info", "pending"]
"""How an operation ended; ``pending`` means the history ends before it did."""

OperationResult = str | dict[str, str] | None
"""What an ok read returned: a value or null for get, key to value for list."""


class Operation(msgspec.Struct, frozen=True, gc=False):
    """One operation of one process, from invocation to completion."""

    index: int
    """Position in `History.operations` (invocation order)."""
    process: str
    function: Function
    key: str | None
    written: str | None
    """The value a put wrote (``None`` for other functions)."""
    status: OperationStatus
    result: OperationResult
    """What an ok get or list returned (``None`` otherwise)."""
    invoke_line: int
    completion_line: int | None
    node: str
    """The node that answered (the completion's node, else the invocation's)."""
    invoke_time_s: float
    completion_time_s: float | None
    final: bool = False
    """An ok read taken after the cluster healed and converged."""
    covers: tuple[str, ...] = ()
    """Keys whose absence from this listing counts as a not-found read."""
    shard: str | None = None

    @property
    def is_read(self) -> bool:
        return self.function in READ_FUNCTIONS

    @property
    def is_write(self) -> bool:
        """A put or delete that took effect or may have (ok, info or pending)."""
        return self.function in ("put", "delete") and self.status != "fail"


class History(msgspec.Struct, frozen=True):
    """A validated history: operations in invocation order."""

    operations: tuple[Operation, ...]

    @property
    def processes(self) -> list[str]:
        """Process names in order of first invocation."""
        return list(dict.fromkeys(operation.process for operation in self.operations))

    @property
    def keys(self) -> set[str]:
        """Every key named by a put, get or delete, or returned by a list."""
        found: set[str] = set()
        for operation in self.operations:
            if operation.key is not None:
                found.add(operation.key)
            elif isinstance(operation.result, dict):
                found.update(operation.result)
        return found

    def __len__(self) -> int:
        return len(self.operations)


def check_invocation(line: HistoryLine, line_number: int) -> None:
    """Validate the key and value of an invocation line."""
    function = line.f
    if function == "list":
        if line.key is not None:
            raise MalformedHistoryError("a list invocation must have key null", line_number)
    elif line.key is None:
        raise MalformedHistoryError(f"a {function} needs a key", line_number)
    if function == "put":
        if not isinstance(line.value, str):
            raise MalformedHistoryError("a put invocation must carry a string value", line_number)
    elif line.value is not None:
        raise MalformedHistoryError(f"a {function} invocation must have value null", line_number)


def _check_optional_fields(line: HistoryLine, line_number: int) -> None:
    function = line.f
    if line.final and function not in READ_FUNCTIONS:
        raise MalformedHistoryError(
            f'"final" is only allowed on reads, not {function}', line_number
        )
    if function != "list" and (line.covers is not None or line.shard is not None):
        raise MalformedHistoryError('"covers" and "shard" are only allowed on lists', line_number)


def _check_completion(line: HistoryLine, invocation: HistoryLine, line_number: int) -> None:
    if line.key != invocation.key:
        raise MalformedHistoryError(
            f"completion key {line.key!r} differs from the invocation's {invocation.key!r}",
            line_number,
        )
    if line.type != "ok":
        return  # the value of a fail or info completion is not used
    function = line.f
    if function == "get" and isinstance(line.value, dict):
        raise MalformedHistoryError("an ok get must return a string or null", line_number)
    if function == "list" and not isinstance(line.value, dict):
        raise MalformedHistoryError("an ok list must return an object of key to value", line_number)
    if function == "put" and line.value not in (None, invocation.value):
        raise MalformedHistoryError(
            "an ok put may only echo the value written (or carry null)", line_number
        )
    if function == "delete" and line.value is not None:
        raise MalformedHistoryError("an ok delete must have value null", line_number)


class _Builder:
    """Pairs lines into operations, in one pass."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[int, int, HistoryLine]] = {}
        self.slots: list[Operation | tuple[int, HistoryLine]] = []
        self.put_lines: dict[tuple[str, str], int] = {}

    def invoke(self, line_number: int, line: HistoryLine) -> None:
        check_invocation(line, line_number)
        _check_optional_fields(line, line_number)
        earlier = self.pending.get(line.process)
        if earlier is not None:
            raise MalformedHistoryError(
                f"process {line.process!r} invoked {line.f} while its {earlier[2].f} "
                f"from line {earlier[0]} is still in flight",
                line_number,
            )
        if line.f == "put":
            assert line.key is not None and isinstance(line.value, str)
            value_key = (line.key, line.value)
            first = self.put_lines.get(value_key)
            if first is not None:
                raise MalformedHistoryError(
                    f"put values must be unique per key: {line.value!r} is also written to "
                    f"key {line.key!r} on line {first}",
                    line_number,
                )
            self.put_lines[value_key] = line_number
        self.pending[line.process] = (line_number, len(self.slots), line)
        self.slots.append((line_number, line))

    def complete(self, line_number: int, line: HistoryLine) -> None:
        _check_optional_fields(line, line_number)
        entry = self.pending.pop(line.process, None)
        if entry is None:
            raise MalformedHistoryError(
                f"{line.type} {line.f} of process {line.process!r} has no pending invocation",
                line_number,
            )
        invoke_line, slot, invocation = entry
        if invocation.f != line.f:
            raise MalformedHistoryError(
                f"{line.type} {line.f} does not match the pending {invocation.f} "
                f"of process {line.process!r} from line {invoke_line}",
                line_number,
            )
        _check_completion(line, invocation, line_number)
        self.slots[slot] = _make_operation(slot, invoke_line, invocation, line_number, line)

    def finish(self) -> History:
        operations = [
            slot if isinstance(slot, Operation) else _make_operation(index, slot[0], slot[1])
            for index, slot in enumerate(self.slots)
        ]
        return History(operations=tuple(operations))


_COMPLETION_STATUS: dict[str, OperationStatus] = {"ok": "ok", "fail": "fail", "info": "info"}


def _written_value(invocation: HistoryLine) -> str | None:
    value = invocation.value
    return value if invocation.f == "put" and isinstance(value, str) else None


def _make_operation(
    index: int,
    invoke_line: int,
    invocation: HistoryLine,
    completion_line: int | None = None,
    completion: HistoryLine | None = None,
) -> Operation:
    if completion is None:
        return Operation(
            index=index,
            process=invocation.process,
            function=invocation.f,
            key=invocation.key,
            written=_written_value(invocation),
            status="pending",
            result=None,
            invoke_line=invoke_line,
            completion_line=None,
            node=invocation.node,
            invoke_time_s=invocation.time_s,
            completion_time_s=None,
            final=invocation.final,
            shard=invocation.shard,
        )
    if invocation.shard is not None and completion.shard not in (None, invocation.shard):
        raise MalformedHistoryError(
            f"shard {completion.shard!r} differs from {invocation.shard!r} "
            f"on the invocation (line {invoke_line})",
            completion_line,
        )
    covers = completion.covers if completion.covers is not None else invocation.covers
    is_ok_read = completion.type == "ok" and completion.f in READ_FUNCTIONS
    return Operation(
        index=index,
        process=invocation.process,
        function=invocation.f,
        key=invocation.key,
        written=_written_value(invocation),
        status=_COMPLETION_STATUS[completion.type],
        result=completion.value if is_ok_read else None,
        invoke_line=invoke_line,
        completion_line=completion_line,
        node=completion.node,
        invoke_time_s=invocation.time_s,
        completion_time_s=completion.time_s,
        final=invocation.final or completion.final,
        covers=covers or (),
        shard=completion.shard if completion.shard is not None else invocation.shard,
    )


def build_history(lines: Iterable[tuple[int, HistoryLine]]) -> History:
    """Pair numbered lines into a validated `History` (see the module docstring)."""
    builder = _Builder()
    for line_number, line in lines:
        if line.type == "invoke":
            builder.invoke(line_number, line)
        else:
            builder.complete(line_number, line)
    return builder.finish()
