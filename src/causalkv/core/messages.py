"""Messages between replicas.

These are plain data (msgspec structs, so the runtime can encode them as
MessagePack and decode them with strict type validation). The core checks the
*meaning* of every field again on receipt: peer input is never trusted more
than client input.

Message flow
------------
* ``Push``: a replica that accepted writes sends them at once to the other
  replicas of its shard (the runtime batches messages per destination).
* ``SyncRequest``/``SyncDelta``: anti-entropy. A replica sends its clock of
  what it holds; the peer answers with exactly the versions the requester
  lacks (every live version whose dot is above the requester's clock), in
  chunks, the last one carrying the peer's clock so the requester can advance.
  The requester applies a delta only once it is complete, atomically, which
  keeps its state causally closed.
* ``Prepare``/``Prepared``/``Commit``/``CommitAck``: the view change (see
  ``reconfiguration.py``). ``TransferChunk``/``TransferAck`` carry a node's keys
  to their new owners. ``NewerView`` tells a lagging node what it missed.
"""

from __future__ import annotations

import msgspec

WirePairs = list[tuple[bytes, int]]


class WireVersion(msgspec.Struct, array_like=True, frozen=True):
    key: str
    writer: bytes
    seq: int
    lamport: int
    deps: WirePairs
    value: str | None


class WireNode(msgspec.Struct, array_like=True, frozen=True):
    address: str
    node_id: str


class WireShard(msgspec.Struct, array_like=True, frozen=True):
    name: str
    nodes: list[WireNode]


class WireView(msgspec.Struct, array_like=True, frozen=True):
    epoch: int
    flat: bool
    shards: list[WireShard]


class Push(msgspec.Struct, tag="push", frozen=True):
    epoch: int
    versions: list[WireVersion]


class SyncRequest(msgspec.Struct, tag="sync-request", frozen=True):
    epoch: int
    request_id: int
    known: WirePairs


class SyncDelta(msgspec.Struct, tag="sync-delta", frozen=True):
    epoch: int
    request_id: int
    chunk_index: int
    final: bool
    versions: list[WireVersion]
    known: WirePairs
    """The sender's clock; meaningful in the final chunk only."""


class Prepare(msgspec.Struct, tag="prepare", frozen=True):
    proposal: WireView
    previous: WireView | None
    coordinator: str


class Prepared(msgspec.Struct, tag="prepared", frozen=True):
    epoch: int
    digest: bytes


class Commit(msgspec.Struct, tag="commit", frozen=True):
    proposal: WireView
    previous: WireView | None


class CommitAck(msgspec.Struct, tag="commit-ack", frozen=True):
    epoch: int
    digest: bytes


class Superseded(msgspec.Struct, tag="superseded", frozen=True):
    """Reply to a proposal that lost to a higher one (or to a committed view)."""

    epoch: int
    digest: bytes
    winner: WireView
    winner_committed: bool


class NewerView(msgspec.Struct, tag="newer-view", frozen=True):
    view: WireView
    previous: WireView | None


class TransferChunk(msgspec.Struct, tag="transfer", frozen=True):
    """Part of a hand-off: the sender's keys that belong to the receiver's shard
    in the target view. Applied once all ``chunk_count`` chunks are in."""

    epoch: int
    digest: bytes
    """Target view (the view the keys move into)."""
    generation: int
    """Distinguishes successive transfers from one sender to one target view."""
    chunk_index: int
    chunk_count: int
    versions: list[WireVersion]
    source_epoch: int
    source_digest: bytes
    """The view the sender held the keys under (empty if it held none)."""
    source_shard: int
    """The sender's shard index in that view (-1 if it was not a member)."""
    source_incarnation: bytes
    known: WirePairs
    """The sender's clock: what its data covers."""
    source_shard_count: int = 0
    """How many shards the sender's view had."""
    foreign_keys: list[str] = []
    """Keys in this chunk the sender did not own: it only carried them (second-hand)."""
    carried: list[WireReport] = []
    """Reports of the data the sender carries (first chunk only)."""
    complete: bool = True
    """Every version the sender holds for the receiver's keys, not a delta."""
    source_shard_names: list[str] = []
    """The shard names of the sender's view (first chunk only): which keys it owned."""


class WireReport(msgspec.Struct, array_like=True, frozen=True):
    """A hand-off report passed on by a node that carries the data it describes."""

    origin: str
    source_epoch: int
    source_view_tag: int
    source_shard: int
    source_shard_count: int
    source_incarnation: bytes
    known: WirePairs
    scope_shard_names: list[str] = []
    """The shard whose keys the report covers: the shard names of its view and
    the shard's index (see ``HandoffReport.scope``). Empty when absent (the
    receiver then ignores the report)."""
    scope_shard: int = -1


class TransferAck(msgspec.Struct, tag="transfer-ack", frozen=True):
    epoch: int
    digest: bytes
    generation: int


class ViewQuery(msgspec.Struct, tag="view-query", frozen=True):
    """ "Which view do you serve?" Answered with ``NewerView`` by a node whose view is
    higher; a node whose view is lower asks back. Sent when a node sees a higher
    epoch than its own, and periodically to the nodes it knows (view gossip), so
    that nodes holding different views always end up talking."""

    epoch: int
    digest: bytes = b""


PeerMessage = (
    Push
    | SyncRequest
    | SyncDelta
    | Prepare
    | Prepared
    | Commit
    | CommitAck
    | Superseded
    | NewerView
    | TransferChunk
    | TransferAck
    | ViewQuery
)


class Envelope(msgspec.Struct, frozen=True):
    """A batch of messages from one node to another, as sent on the wire."""

    sender: str
    destination: str
    epoch: int
    messages: list[PeerMessage]
    digest: bytes = b""
    """Digest of the sender's view: tells apart different views with one epoch."""
