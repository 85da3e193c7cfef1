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
* **piecewise**: reports are grouped by the view their senders held. The shards
  of one such view partition the whole keyspace, so if, for every shard of that
  view, some replica reported holding W up to s, then every key the receiver
  now owns is covered for W up to s. A writer of that view wrote nothing
  outside its own shard, so the other shards do not limit it; a shard with no
  report limits every other writer to 0. Each group gives a bound on its own;
  the receiver takes the best.

The groups come from the reports themselves (each names the view, by epoch,
tag and shard count, that its sender held), not from what a coordinator
believed the previous view to be, which can be stale. Both bounds only grow as
late reports arrive, and never claim a version the receiver does not hold.
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
    source_shard_count: int = 0
    """How many shards the sender's view had (0 if unknown)."""
    first_hand: bool = True
    """Sent by the node it describes, about data it owned. A node that passes on
    data it only carried (received in a hand-off) passes on the reports that came
    with it too, marked second-hand."""
    complete: bool = True
    """The sender handed over every version it held for the receiver's keys (not
    just a delta above the receiver's clock, as it does for co-replicas)."""
    scope: tuple[tuple[str, ...], int] | None = None
    """For a second-hand report: the shard (the view's shard names, and the
    index of the shard) whose keys it was received for. A report covers only the
    keys its receiver owned in the view it was sent for, so a carried one counts
    only towards shards whose keys all lie in that one (``shard_within``);
    anywhere else it would vouch for keys it never saw."""


def coverage_from_reports(reports: Iterable[HandoffReport]) -> Clock:
    """Combine hand-off reports into the clock the receiver may claim."""
    coverage: Clock = {}
    groups: dict[tuple[int, int, int], dict[int, Clock]] = {}
    for report in reports:
        for writer, seq in report.known.items():
            if (
                writer_incarnation(writer) == report.source_incarnation
                and writer_epoch(writer) == report.source_epoch
                and writer_view_tag(writer) == report.source_view_tag
                and seq > coverage.get(writer, 0)
            ):
                coverage[writer] = seq
        if 0 <= report.source_shard < report.source_shard_count:
            view_key = (report.source_epoch, report.source_view_tag, report.source_shard_count)
            best = groups.setdefault(view_key, {}).setdefault(report.source_shard, {})
            for writer, seq in report.known.items():
                if seq > best.get(writer, 0):
                    best[writer] = seq
    for (epoch, view_tag, shard_count), best_by_shard in groups.items():
        writers: set[Writer] = set()
        for best in best_by_shard.values():
            writers.update(best)
        for writer in writers:
            of_that_view = writer_epoch(writer) == epoch and writer_view_tag(writer) == view_tag
            floor: int | None = None
            for shard_index in range(shard_count):
                if of_that_view and writer_shard_index(writer) != shard_index:
                    continue
                shard_best = best_by_shard.get(shard_index)
                value = 0 if shard_best is None else shard_best.get(writer, 0)
                floor = value if floor is None else min(floor, value)
                if floor == 0:
                    break
            if floor and floor > coverage.get(writer, 0):
                coverage[writer] = floor
    return coverage
