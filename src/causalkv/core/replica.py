"""The replica state machine: one causalkv node, without I/O.

Theory of operation
-------------------
Inputs are client requests (``submit``), view proposals (``propose_view``,
``reset``), envelopes of peer messages (``receive``) and the passage of time
(``tick``); every input carries the current time. Each returns an ``Output``:
what to persist, then which messages to send and which requests to answer
(``effects.py`` states the ordering contract). The same object runs under the
asyncio server and under the deterministic simulator.

State, and the invariants the rest of the code keeps:

* ``store`` holds versions of the keys this node owns (transiently also keys
  being handed over during a view change);
* ``known[W]`` = s means this node holds every version writer W issued up to s
  for the keys it owns, or what superseded it; its state is causally closed
  (it never holds a version without that version's causes on its shard);
* a client request is served only when the client's token is covered by
  ``known`` for the writers that concern this shard (``base.Scope``);
  otherwise it waits, while the node pulls what it lacks;
* ``writer``/``writer_seq``: this node's own writer in the served view and the
  last sequence number it issued; persisted before any reply reveals it, so a
  restart never reissues a version.

Module map: ``client_operations.py`` (requests, waits), ``replication.py``
(pushes, anti-entropy, tombstones), ``reconfiguration.py`` (view changes),
``coverage.py`` (clocks after a view change), ``keystore.py`` (versions).
"""

from __future__ import annotations

from collections.abc import Iterable

from causalkv.core.base import ACQUAINTANCES_MAX, ReplicaSettings
from causalkv.core.client_operations import ClientOperationsMixin
from causalkv.core.effects import DurableMeta, Output
from causalkv.core.keystore import Entry
from causalkv.core.messages import (
    Commit,
    CommitAck,
    Envelope,
    NewerView,
    PeerMessage,
    Prepare,
    Prepared,
    Push,
    Superseded,
    SyncDelta,
    SyncRequest,
    TransferAck,
    TransferChunk,
    ViewQuery,
)
from causalkv.core.reconfiguration import ReconfigurationMixin
from causalkv.core.replication import ReplicationMixin
from causalkv.core.requests import ClientRequest
from causalkv.core.view import View, ViewError, validate_address
from causalkv.core.wire import view_from_wire


class Replica(ClientOperationsMixin, ReplicationMixin, ReconfigurationMixin):
    """One causalkv node's protocol state. Not thread-safe: drive it from one task."""

    def __init__(self, settings: ReplicaSettings, incarnation: bytes) -> None:
        super().__init__(settings, incarnation)
        self._init_replication()
        self._init_reconfiguration()

    @classmethod
    def restore(
        cls,
        settings: ReplicaSettings,
        meta: DurableMeta,
        entries: Iterable[tuple[str, Entry]],
    ) -> Replica:
        """Rebuild a replica from what it persisted."""
        replica = cls(settings, meta.incarnation)
        replica.self_address = meta.self_address
        replica.highest_epoch = meta.highest_epoch
        replica.known = dict(meta.known)
        replica.store.restore_many(entries)
        replica.store.observe_lamport(meta.lamport)
        view = None if meta.view is None else view_from_wire(meta.view)
        replica.previous_view = (
            None if meta.previous_view is None else view_from_wire(meta.previous_view)
        )
        replica.writer = meta.writer
        replica.acquaintances = dict.fromkeys(meta.acquaintances[:ACQUAINTANCES_MAX])
        replica._set_membership(view)
        if replica.writer is not None and replica.writer == meta.writer:
            replica.writer_seq = max(meta.writer_seq, replica.known.get(replica.writer, 0))
            replica.known[replica.writer] = replica.writer_seq
        replica._durable_writer_seq = replica.writer_seq
        replica._holding_foreign_keys = meta.foreign_keys and len(replica.store) > 0
        if replica._holding_foreign_keys:
            replica.departures = dict(meta.departures)
        replica._restore_reports(meta.handoff_target, meta.handoff_reports)
        replica.carried_reports = dict(meta.carried_reports)
        # A hold after an abandoned change outlives a restart (seed 20888: the
        # owner restarted, collected a delete, and a stale copy came back).
        replica._restored_tombstone_hold_s = max(0.0, meta.tombstone_hold_s)
        return replica

    # -- inputs ------------------------------------------------------------------------------------

    def submit(self, now_s: float, request: ClientRequest) -> Output:
        """A client request (already parsed and validated by the API layer)."""
        self._begin(now_s)
        self._handle_request(request)
        return self._finish()

    def propose_view(
        self, now_s: float, request_id: int, view: View, self_address: str | None
    ) -> Output:
        """A client asked this node to install ``view`` (epoch ignored).

        ``self_address`` is this node's address as it appears in ``view``, when
        the runtime could tell (by node id, configured address, or the address
        the client used); a node keeps the first address it learns.
        """
        self._begin(now_s)
        if self_address is not None and self.self_address is None:
            self.self_address = self_address
            self._meta_changed()
        self._propose(request_id, view)
        return self._finish()

    def rename_self(self, now_s: float, address: str) -> Output:
        """This node learned (by probing) that a view names it ``address``.

        Only allowed while it serves no view that names its old address: a
        member's address is its identity within that view.
        """
        self._begin(now_s)
        validate_address(address)
        view = self.view
        if view is None or self.self_address is None or not view.contains(self.self_address):
            self.self_address = address
            self._set_membership(view)
            self._meta_changed()
        return self._finish()

    def reset(self, now_s: float) -> Output:
        """Drop view and data (SyncKV ``DELETE /kvs/admin/view``)."""
        self._begin(now_s)
        self._reset_node()
        return self._finish()

    def receive(self, now_s: float, envelope: Envelope) -> Output:
        """A batch of messages from a peer."""
        self._begin(now_s)
        sender = envelope.sender
        try:
            validate_address(sender)
        except ViewError:
            self.counters.peer_input_rejected += 1
            return self._finish()
        if self.self_address is None and envelope.destination:
            try:
                self.self_address = validate_address(envelope.destination)
            except ViewError:
                self.counters.peer_input_rejected += 1
                return self._finish()
            self._set_membership(self.view)
            self._meta_changed()
        mine = (0, b"") if self.view is None else self.view.proposal_key
        theirs = (envelope.epoch, envelope.digest)
        if envelope.epoch != mine[0] or (envelope.digest and envelope.digest != mine[1]):
            if theirs < mine and not any(
                isinstance(m, NewerView | Prepare | Commit) for m in envelope.messages
            ):
                self._send_newer_view(sender)
            elif theirs > mine:
                self._ask_view(sender)
        for message in envelope.messages:
            self._dispatch(sender, message)
        return self._finish()

    def observe_peer_epoch(self, now_s: float, address: str, epoch: int) -> Output:
        """A peer (e.g. one that forwarded a request) revealed the epoch it serves."""
        self._begin(now_s)
        my_epoch = 0 if self.view is None else self.view.epoch
        if epoch < my_epoch:
            self._send_newer_view(address)
        elif epoch > my_epoch:
            self._query_newer_view()
        return self._finish()

    def tick(self, now_s: float) -> Output:
        """Time passed: retries, anti-entropy, timeouts, collection."""
        self._begin(now_s)
        self._expire_waiters()
        if self.waiters:
            self._retry_waiters()
        self._anti_entropy_tick()
        self._reconfiguration_tick()
        self._collect_tombstones()
        self._expire_staged_deltas()
        return self._finish()

    # -- dispatch ------------------------------------------------------------------------------------

    def _dispatch(self, sender: str, message: PeerMessage) -> None:
        if isinstance(message, Push):
            self._on_push(sender, message)
        elif isinstance(message, SyncRequest):
            self._on_sync_request(sender, message)
        elif isinstance(message, SyncDelta):
            self._on_sync_delta(sender, message)
        elif isinstance(message, TransferChunk):
            self._on_transfer_chunk(sender, message)
        elif isinstance(message, TransferAck):
            self._on_transfer_ack(sender, message)
        elif isinstance(message, Prepare):
            self._on_prepare(sender, message)
        elif isinstance(message, Prepared):
            self._on_prepared(sender, message)
        elif isinstance(message, Commit):
            self._on_commit(sender, message)
        elif isinstance(message, CommitAck):
            self._on_commit_ack(sender, message)
        elif isinstance(message, Superseded):
            self._on_superseded(sender, message)
        elif isinstance(message, NewerView):
            self._on_newer_view(sender, message)
        elif isinstance(message, ViewQuery):
            self._on_view_query(sender, message)

    # -- inspection ----------------------------------------------------------------------------------

    @property
    def durable_meta(self) -> DurableMeta:
        return self._durable_meta()
