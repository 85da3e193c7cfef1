"""Observations: what each ok read saw of each key, and whose write it was.

An ok get yields one observation of its key. An ok list yields one observation
per returned item, plus a "not found" observation for each key in ``covers``
that the listing does not contain; without ``covers`` absent keys are not
judged. A non-null observed value names the put that wrote it (put values are
unique per key); if there is no such put the read is a thin-air read, and if
that put failed it is a read of a failed write. Both are reported here, and
such observations are excluded from the causal checks (they have no writer).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from causalkv.check.operations import History, Operation
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind

ObservationSource = Literal["get", "list item", "list absence"]


class Observation(NamedTuple):
    """One key as seen by one ok read."""

    operation: int
    """Index of the reading operation."""
    key: str
    value: str | None
    """The value seen, ``None`` for not found."""
    writer: int
    """Index of the put that wrote ``value``; -1 if null or no valid writer."""
    source: ObservationSource

    @property
    def is_judged(self) -> bool:
        """Null, or a value with a valid writer (thin-air reads are not judged)."""
        return self.value is None or self.writer >= 0


class ObservationIndex(NamedTuple):
    """All observations, plus the verdicts found while resolving writers."""

    observations: list[Observation]
    verdicts: list[Verdict]
    by_operation: dict[int, range]
    """Reading operation index to positions in ``observations``."""


def put_index(history: History) -> dict[tuple[str, str], Operation]:
    """``(key, value)`` to the put that wrote it, failed puts included."""
    index: dict[tuple[str, str], Operation] = {}
    for operation in history.operations:
        if operation.function == "put" and operation.key is not None:
            assert operation.written is not None
            index[(operation.key, operation.written)] = operation
    return index


def _observed_items(operation: Operation) -> list[tuple[str, str | None, ObservationSource]]:
    if operation.function == "get":
        assert operation.key is not None and not isinstance(operation.result, dict)
        return [(operation.key, operation.result, "get")]
    listing = operation.result
    assert isinstance(listing, dict)
    items: list[tuple[str, str | None, ObservationSource]] = [
        (key, value, "list item") for key, value in listing.items()
    ]
    items.extend((key, None, "list absence") for key in operation.covers if key not in listing)
    return items


def collect_observations(history: History) -> ObservationIndex:
    """Resolve every ok read into observations and report unexplained values."""
    puts = put_index(history)
    writer_of = {pair: put.index for pair, put in puts.items() if put.status != "fail"}
    observations: list[Observation] = []
    verdicts: list[Verdict] = []
    by_operation: dict[int, range] = {}
    for operation in history.operations:
        if operation.status != "ok" or not operation.is_read:
            continue
        reader = operation.index
        first = len(observations)
        for key, value, source in _observed_items(operation):
            writer = -1
            if value is not None:
                writer = writer_of.get((key, value), -1)
                if writer < 0:
                    put = puts.get((key, value))
                    verdicts.append(
                        _thin_air(operation, key, value)
                        if put is None
                        else _failed_write_read(operation, put, key, value)
                    )
            observations.append(Observation(reader, key, value, writer, source))
        by_operation[reader] = range(first, len(observations))
    return ObservationIndex(observations, verdicts, by_operation)


def _thin_air(operation: Operation, key: str, value: str) -> Verdict:
    return Verdict(
        kind=VerdictKind.THIN_AIR_READ,
        key=key,
        message=(f"{operation.process} read {key} = {value!r}, a value no put of {key} ever wrote"),
        operations=(OperationReference.to(operation, "read", key, value),),
    )


def _failed_write_read(operation: Operation, put: Operation, key: str, value: str) -> Verdict:
    return Verdict(
        kind=VerdictKind.READ_OF_FAILED_WRITE,
        key=key,
        message=(
            f"{operation.process} read {key} = {value!r}, written by a put of "
            f"{put.process} that failed (so never took effect)"
        ),
        operations=(
            OperationReference.to(operation, "read", key, value),
            OperationReference.to(put, "failed write"),
        ),
    )
