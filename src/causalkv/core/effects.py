"""What the core asks its runtime to do.

Every call into the replica returns an ``Output``. The runtime must carry it
out in this order, which is the contract that makes acknowledgements safe:

1. make ``persist`` durable (group commit is fine);
2. only then deliver the ``messages`` and ``results`` whose ``after_persist``
   is at most the persist id that has become durable. Items with
   ``after_persist == 0`` depend on nothing unwritten and may go at once.

After a persist batch is durable the runtime calls ``Replica.mark_durable``
with its id, so later replies that expose those writes need not wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from causalkv.core.clock import Clock
from causalkv.core.coverage import HandoffReport
from causalkv.core.keystore import Entry
from causalkv.core.messages import PeerMessage, WireView
from causalkv.core.requests import OperationResult
from causalkv.core.writer import Writer


@dataclass(slots=True)
class DurableMeta:
    """Everything besides key versions that a node needs to restart correctly."""

    incarnation: bytes
    self_address: str | None
    view: WireView | None
    previous_view: WireView | None
    highest_epoch: int
    writer: Writer | None
    writer_seq: int
    known: Clock
    lamport: int
    foreign_keys: bool = False
    """The node holds keys it does not own (a hand-off not yet acknowledged)."""
    handoff_target: tuple[int, bytes] | None = None
    """The view (epoch, digest) the reports below are for: pending or just committed."""
    handoff_reports: dict[str, HandoffReport] = field(default_factory=dict)
    """Hand-off reports received: acknowledged transfers are never resent, so they
    must survive a restart or the node could never claim what they covered."""
    carried_reports: dict[str, HandoffReport] = field(default_factory=dict)
    """Reports of hand-off data this node holds without owning it."""
    tombstone_hold_s: float = 0.0
    """How much longer no tombstone may be collected (after an abandoned change),
    as of this write: a restart holds at least that long again."""
    departures: dict[int, HandoffReport] = field(default_factory=dict)
    """Reports of the shards the node left, while it holds their data."""
    acquaintances: tuple[str, ...] = ()
    """Nodes met in proposals before any view was served (``ReplicaBase.acquaintances``)."""


@dataclass(slots=True)
class PersistBatch:
    persist_id: int
    keys: dict[str, Entry | None]
    """Key -> its complete set of versions, or None to delete the key."""
    meta: DurableMeta
    reset: bool = False
    """Drop every stored key before applying this batch (a node leaving or resetting)."""


@dataclass(slots=True)
class OutgoingMessage:
    destination: str
    message: PeerMessage
    after_persist: int = 0


@dataclass(slots=True)
class CompletedRequest:
    request_id: int
    result: OperationResult
    after_persist: int = 0


@dataclass(slots=True)
class Output:
    persist: list[PersistBatch] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)
    results: list[CompletedRequest] = field(default_factory=list)
    view_changes: list[int] = field(default_factory=list)
    """Epochs this node started serving during the step (for logs and metrics)."""

    def is_empty(self) -> bool:
        return not (self.persist or self.messages or self.results)
