"""Reading and writing histories.

* `load_history` / `parse_history` decode a JSON-lines history (see
  `causalkv.check.format`) and validate it into a `History`
  (see `causalkv.check.operations`); every problem raises
  `MalformedHistoryError` naming the line.
* `HistoryRecorder` writes the format. Clients call ``invoke`` before sending a
  request and ``ok`` / ``fail`` / ``info`` when they know how it ended. It is
  thread-safe, keeps the lines in memory and/or streams them to a file (one
  flushed line per event, so a crashed run still leaves a readable history),
  and takes its timestamps from a clock you choose: virtual time in the
  simulator, wall time (the default) against a real cluster.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import msgspec

from causalkv.check.format import (
    Function,
    HistoryLine,
    LineType,
    LineValue,
    MalformedHistoryError,
    decode_lines,
    encode_line,
)
from causalkv.check.operations import History, build_history, check_invocation

__all__ = [
    "History",
    "HistoryLine",
    "HistoryRecorder",
    "Invocation",
    "MalformedHistoryError",
    "load_history",
    "parse_history",
]


def parse_history(text: str | bytes) -> History:
    """Decode and validate a whole history given as JSON lines."""
    lines: list[str] | list[bytes] = text.splitlines()
    return build_history(decode_lines(lines))


def load_history(path: str | os.PathLike[str]) -> History:
    """Read, decode and validate the history file at ``path``.

    Raises `MalformedHistoryError` for invalid content and `OSError` if the
    file cannot be read.
    """
    return parse_history(Path(path).read_bytes())


class Invocation(msgspec.Struct, frozen=True):
    """Handle for an invoked operation; pass it to `HistoryRecorder.ok` etc."""

    process: str
    f: Function
    key: str | None
    node: str
    line_number: int


class HistoryRecorder:
    """Records a history as the operations happen.

    ``path``: stream lines to this file (created or truncated) as they are
    recorded. ``keep_lines``: also keep them in memory (needed for `lines` and
    `history`). ``clock``: where timestamps come from when a call does not pass
    ``time_s``. Misuse (a second invocation while one is in flight, completing
    an operation twice) raises `ValueError` immediately.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        keep_lines: bool = True,
        clock: Callable[[], float] = time.time,
        flush_every_line: bool = True,
    ) -> None:
        if path is None and not keep_lines:
            raise ValueError("a recorder without a file must keep its lines in memory")
        self._lock = threading.Lock()
        self._clock = clock
        self._keep_lines = keep_lines
        self._flush_every_line = flush_every_line
        self._lines: list[HistoryLine] = []
        self._line_count = 0
        self._in_flight: dict[str, Invocation] = {}
        self._file: BinaryIO | None = None if path is None else open(path, "wb")  # noqa: SIM115

    def invoke(
        self,
        process: str,
        f: Function,
        key: str | None,
        value: str | None,
        node: str,
        time_s: float | None = None,
    ) -> Invocation:
        """Record that ``process`` sends ``f`` to ``node``; returns the handle.

        ``value`` is the value written by a put, ``None`` for other functions;
        ``key`` is ``None`` for a list. A wrong shape raises
        `MalformedHistoryError` at once.
        """
        with self._lock:
            if process in self._in_flight:
                earlier = self._in_flight[process]
                raise ValueError(
                    f"process {process!r} already has a {earlier.f} in flight "
                    f"(line {earlier.line_number})"
                )
            line = HistoryLine(
                process=process,
                type="invoke",
                f=f,
                key=key,
                value=value,
                time_s=self._time(time_s),
                node=node,
            )
            check_invocation(line, self._line_count + 1)
            invocation = Invocation(process, f, key, node, self._write(line))
            self._in_flight[process] = invocation
            return invocation

    def ok(
        self,
        invocation: Invocation,
        value: LineValue = None,
        *,
        final: bool = False,
        covers: Iterable[str] | None = None,
        shard: str | None = None,
        node: str | None = None,
        time_s: float | None = None,
    ) -> None:
        """Record success; ``value`` is what a get or list returned.

        ``final`` marks a final read after convergence, ``covers`` the keys a
        listing vouches for (absent means not found), ``shard`` the shard
        listed. ``node`` defaults to the node the operation was sent to.
        """
        self._complete(
            invocation,
            "ok",
            value,
            node=node,
            time_s=time_s,
            final=final,
            covers=None if covers is None else tuple(covers),
            shard=shard,
        )

    def fail(
        self, invocation: Invocation, *, node: str | None = None, time_s: float | None = None
    ) -> None:
        """Record that the operation definitely did not take effect."""
        self._complete(invocation, "fail", None, node=node, time_s=time_s)

    def info(
        self, invocation: Invocation, *, node: str | None = None, time_s: float | None = None
    ) -> None:
        """Record that the outcome is unknown (e.g. a timeout)."""
        self._complete(invocation, "info", None, node=node, time_s=time_s)

    def in_flight(self) -> list[Invocation]:
        """Operations invoked and not completed yet."""
        with self._lock:
            return list(self._in_flight.values())

    def lines(self) -> list[HistoryLine]:
        """The lines recorded so far (requires ``keep_lines``)."""
        with self._lock:
            self._require_lines()
            return list(self._lines)

    def history(self) -> History:
        """Validate the lines recorded so far into a `History`.

        Operations still in flight become pending operations (judged like
        ``info``). Raises `MalformedHistoryError` if a precondition fails,
        e.g. a put value written twice to the same key.
        """
        with self._lock:
            self._require_lines()
            numbered = list(enumerate(self._lines, start=1))
        return build_history(numbered)

    def close(self) -> None:
        """Flush and close the file, if any. Lines kept in memory stay available."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _complete(
        self,
        invocation: Invocation,
        line_type: LineType,
        value: LineValue,
        *,
        node: str | None,
        time_s: float | None,
        final: bool = False,
        covers: tuple[str, ...] | None = None,
        shard: str | None = None,
    ) -> None:
        with self._lock:
            if self._in_flight.get(invocation.process) is not invocation:
                raise ValueError(
                    f"the {invocation.f} of process {invocation.process!r} from line "
                    f"{invocation.line_number} is not in flight"
                )
            del self._in_flight[invocation.process]
            line = HistoryLine(
                process=invocation.process,
                type=line_type,
                f=invocation.f,
                key=invocation.key,
                value=value,
                time_s=self._time(time_s),
                node=invocation.node if node is None else node,
                final=final,
                covers=covers,
                shard=shard,
            )
            self._write(line)

    def _time(self, time_s: float | None) -> float:
        return float(self._clock() if time_s is None else time_s)

    def _write(self, line: HistoryLine) -> int:
        """Append one line (lock held); returns its 1-based line number."""
        if self._file is not None:
            self._file.write(encode_line(line) + b"\n")
            if self._flush_every_line:
                self._file.flush()
        if self._keep_lines:
            self._lines.append(line)
        self._line_count += 1
        return self._line_count

    def _require_lines(self) -> None:
        if not self._keep_lines:
            raise ValueError("this recorder does not keep its lines in memory")
