"""Verdicts: the violations the checker reports, as plain serialisable data."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from causalkv.check.format import Function
from causalkv.check.operations import Operation, OperationStatus


class VerdictKind(StrEnum):
    """Names of violations; ``docs/checker.md`` defines each precisely."""

    CAUSAL_CYCLE = "causal-cycle"
    THIN_AIR_READ = "thin-air-read"
    READ_OF_FAILED_WRITE = "read-of-failed-write"
    READ_YOUR_WRITES = "read-your-writes"
    MONOTONIC_READS = "monotonic-reads"
    MONOTONIC_WRITES = "monotonic-writes"
    WRITES_FOLLOW_READS = "writes-follow-reads"
    CAUSAL_VISIBILITY = "causal-visibility"
    CONVERGENCE = "convergence"
    LOST_WRITE = "lost-write"


SESSION_GUARANTEE_KINDS: frozenset[VerdictKind] = frozenset(
    {
        VerdictKind.READ_YOUR_WRITES,
        VerdictKind.MONOTONIC_READS,
        VerdictKind.MONOTONIC_WRITES,
        VerdictKind.WRITES_FOLLOW_READS,
        VerdictKind.CAUSAL_VISIBILITY,
    }
)
"""Kinds reported for a read that missed a write in its causal past."""


class OperationReference(msgspec.Struct, frozen=True):
    """An operation named by a verdict, with the part of it that matters.

    ``role`` says what the operation is to the verdict (``"read"``,
    ``"version read"``, ``"overwriting write"``, ...); ``key`` and ``value``
    are the key and value concerned (one entry of a listing, not all of it).
    """

    role: str
    process: str
    f: Function
    status: OperationStatus
    key: str | None
    value: str | None
    invoke_line: int
    completion_line: int | None
    node: str
    final: bool = False

    @classmethod
    def to(
        cls,
        operation: Operation,
        role: str,
        key: str | None = None,
        value: str | None = None,
    ) -> OperationReference:
        """Reference ``operation``.

        ``key`` and ``value`` default to the operation's own: the value written
        by a put, the value returned by a get.
        """
        return cls(
            role=role,
            process=operation.process,
            f=operation.function,
            status=operation.status,
            key=operation.key if key is None else key,
            value=_own_value(operation) if value is None else value,
            invoke_line=operation.invoke_line,
            completion_line=operation.completion_line,
            node=operation.node,
            final=operation.final,
        )

    def describe(self) -> str:
        """E.g. ``p1 get k1 -> 'v3' (lines 10-12, node n2)``."""
        what = f"{self.f} {self.key}" if self.key is not None else self.f
        if self.f == "put":
            what += f" = {self.value!r}"
        elif self.f in ("get", "list") and self.status == "ok" and self.key is not None:
            what += f" -> {self.value!r}" if self.value is not None else " -> not found"
        status = "" if self.status == "ok" else f" [{self.status}]"
        final = " final" if self.final else ""
        end = "" if self.completion_line is None else str(self.completion_line)
        return (
            f"{self.process} {what}{status}{final} "
            f"(lines {self.invoke_line}-{end}, node {self.node})"
        )


def _own_value(operation: Operation) -> str | None:
    if operation.function == "put":
        return operation.written
    return operation.result if isinstance(operation.result, str) else None


class Verdict(msgspec.Struct, frozen=True):
    """One violation: its kind, the key concerned, a sentence, the operations."""

    kind: VerdictKind
    key: str | None
    message: str
    operations: tuple[OperationReference, ...]

    @property
    def first_line(self) -> int:
        """The earliest line of the operations involved (for sorting reports)."""
        return min((reference.invoke_line for reference in self.operations), default=0)
