"""What a node holds of the writers of earlier views, after a view change.

A replica's clock ``known`` means: "for every writer W, I hold every version W
issued up to ``known[W]`` for the keys I own (or whatever superseded it)".
When a view changes, the keys a node owns change, so its clock for the writers
of earlier views must be rebuilt from what the hand-off delivered. Each
transfer carries a *report*: the sender's clock, which covers the keys the
sender owned in the view it transferred from.

For writer W, the receiver's coverage is the larger of two lower bounds:

* **own writer**: a report from the incarnation that *was* W, sent from the
  very view W wrote in, covers all of W (a writer only ever writes keys its own
  node owns, and a node drops keys only after handing them off in a later
  view);
* **piecewise**: the receiver's new key range is made of pieces, one per shard
  of the previous view. A piece is covered for W up to the best report from
  any replica of that shard, except that a writer of the previous view wrote
  nothing outside its own shard, so other pieces do not limit it. A shard with
  no report yet limits everything older than the previous view to 0.

Both bounds only grow as late reports arrive, and never claim a version the
receiver does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from causalkv.core.clock import Clock
from causalkv.core.writer import (
    Writer,
    writer_epoch,
    writer_incarnation,
    writer_shard_index,
    writer_view_tag,
)


@dataclass(frozen=True, slots=True)
class HandoffReport:
    source_epoch: int
    source_view_tag: int
    source_shard: int
    """-1 when the sender was not a member of its view."""
    source_incarnation: bytes
    known: Clock


def coverage_from_reports(
    previous_epoch: int,
    previous_view_tag: int,
    previous_shard_count: int,
    reports: Iterable[HandoffReport],
) -> Clock:
    """Combine hand-off reports into the clock the receiver may claim."""
    reports = list(reports)
    writers: set[Writer] = set()
    best_by_shard: dict[int, Clock] = {}
    coverage: Clock = {}
    for report in reports:
        writers.update(report.known)
        for writer, seq in report.known.items():
            if (
                writer_incarnation(writer) == report.source_incarnation
                and writer_epoch(writer) == report.source_epoch
                and writer_view_tag(writer) == report.source_view_tag
                and seq > coverage.get(writer, 0)
            ):
                coverage[writer] = seq
        if (
            report.source_epoch == previous_epoch
            and report.source_view_tag == previous_view_tag
            and 0 <= report.source_shard < previous_shard_count
        ):
            best = best_by_shard.setdefault(report.source_shard, {})
            for writer, seq in report.known.items():
                if seq > best.get(writer, 0):
                    best[writer] = seq
    if previous_shard_count <= 0:
        return coverage
    for writer in writers:
        of_previous_view = (
            writer_epoch(writer) == previous_epoch and writer_view_tag(writer) == previous_view_tag
        )
        floor: int | None = None
        for shard_index in range(previous_shard_count):
            if of_previous_view and writer_shard_index(writer) != shard_index:
                continue
            shard_best = best_by_shard.get(shard_index)
            value = 0 if shard_best is None else shard_best.get(writer, 0)
            floor = value if floor is None else min(floor, value)
            if floor == 0:
                break
        if floor and floor > coverage.get(writer, 0):
            coverage[writer] = floor
    return coverage
