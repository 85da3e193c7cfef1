"""Replication within a shard: pushes, anti-entropy, tombstone collection.

Pushes carry each accepted write to the shard's other replicas at once. A
replica applies a writer's versions in sequence order and only once their
dependencies on this shard are applied, so its state is always *causally
closed*: whenever it holds a version it holds that version's causes (or what
superseded them). Out-of-order pushes wait in a bounded buffer.

Anti-entropy repairs whatever a push missed: every ``anti_entropy_interval_s``
a replica sends one peer (round-robin) its clock; the peer answers with every
live version above that clock, and its own clock. The requester applies the
whole answer at once and raises its clock to the peer's: the union of two
causally closed states is causally closed. Only what the requester lacks is
sent, never the whole store.

A tombstone is collected once every replica of the shard has reported a clock
covering it and everything it superseded, so a deleted key can never come
back through anti-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from causalkv.core.base import ReplicaBase, Scope
from causalkv.core.clock import Clock
from causalkv.core.keystore import Version
from causalkv.core.messages import Push, SyncDelta, SyncRequest, WireVersion
from causalkv.core.wire import (
    PeerInputError,
    clock_from_pairs,
    pairs_from_clock,
    version_from_wire,
    version_to_wire,
)
from causalkv.core.writer import Writer

SYNC_REQUESTS_TRACKED_MAX = 256
"""Outstanding sync requests remembered; a reply to a forgotten one advances nothing."""
_SEQ_MAX = 2**63
"""Above any sequence number a writer reaches."""


@dataclass(slots=True)
class _StagedDelta:
    chunks: dict[int, list[WireVersion]] = field(default_factory=dict)
    versions: int = 0
    started_s: float = 0.0


def chunk_versions(
    versions: list[WireVersion], versions_max: int, bytes_max: int
) -> list[list[WireVersion]]:
    """Split versions into chunks bounded by count and by value bytes (at least one chunk)."""
    chunks: list[list[WireVersion]] = [[]]
    size = 0
    for version in versions:
        version_size = len(version.key) + (0 if version.value is None else len(version.value)) + 64
        current = chunks[-1]
        if current and (len(current) >= versions_max or size + version_size > bytes_max):
            chunks.append([])
            size = 0
        chunks[-1].append(version)
        size += version_size
    return chunks


class ReplicationMixin(ReplicaBase):
    _pending: dict[Writer, dict[int, tuple[str, Version]]]
    _pending_count: int
    _staged_deltas: dict[tuple[str, int], _StagedDelta]
    _staged_delta_versions: int
    _next_sync_request_id: int
    _anti_entropy_cursor: int
    _last_anti_entropy_s: float
    _last_tombstone_collection_s: float
    peer_known: dict[str, Clock]
    _sync_asked_s: dict[str, float]
    _sync_requests: dict[int, Clock]
    """The clock this replica reported with each outstanding sync request."""
    """When this replica last asked each peer back for a sync (rate limit)."""

    def _init_replication(self) -> None:
        self._pending = {}
        self._pending_count = 0
        self._staged_deltas = {}
        self._staged_delta_versions = 0
        # Request ids differ between incarnations, so a reply to a request sent
        # before a restart is never taken for a reply to one sent after it.
        self._next_sync_request_id = int.from_bytes(self.incarnation[:4], "big") << 24
        self._sync_requests = {}
        self._anti_entropy_cursor = 0
        self._last_anti_entropy_s = float("-inf")
        self._last_tombstone_collection_s = float("-inf")
        self.peer_known = {}
        self._sync_asked_s = {}

    def _reset_replication(self) -> None:
        """Forget per-view replication state (on a view change)."""
        self._sync_requests.clear()
        self._pending.clear()
        self._pending_count = 0
        self._staged_deltas.clear()
        self._staged_delta_versions = 0
        self.peer_known.clear()

    def _is_shard_peer(self, address: str) -> bool:
        return address in self.shard_peers()

    def _owns_key(self, key: str) -> bool:
        view = self.view
        return view is not None and view.shard_index_for_key(key) == self.shard_index

    def _apply_replicated(self, key: str, version: Version) -> bool:
        """Apply a version of this shard's keys received from a peer."""
        if self.known.get(version.writer, 0) >= version.seq and not self.store.has_dot(
            key, version.writer, version.seq
        ):
            # Already seen here and since superseded (possibly collected): never resurrect it.
            return False
        outcome = self.store.apply(key, version)
        if outcome.changed:
            self._key_changed(key)
            self.counters.versions_applied_from_peers += 1
        return outcome.changed

    # -- pushes ------------------------------------------------------------------------------------

    def _on_push(self, sender: str, message: Push) -> None:
        view = self.view
        if view is None or message.epoch != view.epoch or not self._is_shard_peer(sender):
            return
        for wire in message.versions:
            try:
                key, version = version_from_wire(wire)
            except PeerInputError:
                self.counters.peer_input_rejected += 1
                continue
            if self._scope(version.writer) is not Scope.LOCAL or not self._owns_key(key):
                self.counters.peer_input_rejected += 1
                continue
            if version.seq <= self.known.get(version.writer, 0):
                continue
            queue = self._pending.setdefault(version.writer, {})
            if version.seq not in queue:
                if self._pending_count >= self.settings.pending_versions_max:
                    continue  # anti-entropy will bring it
                queue[version.seq] = (key, version)
                self._pending_count += 1
        self._drain_pending()

    def _drain_pending(self) -> None:
        applied_any = False
        progress = True
        while progress and self._pending:
            progress = False
            for writer in list(self._pending):
                queue = self._pending[writer]
                while queue:
                    next_seq = self.known.get(writer, 0) + 1
                    item = queue.get(next_seq)
                    if item is None:
                        break
                    key, version = item
                    if not self._dependencies_applied(version.dep_items()):
                        break
                    del queue[next_seq]
                    self._pending_count -= 1
                    self._apply_replicated(key, version)
                    self.known[writer] = next_seq
                    self.store.observe_lamport(version.lamport)
                    applied_any = progress = True
                floor = self.known.get(writer, 0)
                for seq in [seq for seq in queue if seq <= floor]:
                    del queue[seq]
                    self._pending_count -= 1
                if not queue:
                    del self._pending[writer]
        if applied_any:
            self._meta_changed()
            self._retry_waiters()

    # -- anti-entropy ------------------------------------------------------------------------------

    def _request_sync_from(self, peers: tuple[str, ...]) -> None:
        view = self.view
        if view is None or not peers:
            return
        reported = self._relevant_known()
        known = pairs_from_clock(reported)
        # Peers act on the clock a request reports: they collect tombstones it
        # covers and hand off only what lies above it. So it goes out only once
        # what it claims is durable here (seed 160952: a replica reported a
        # delete, lost it in a crash, and its peers had collected it meanwhile;
        # the deleted value came back).
        after_persist = self._after_persist_for_state()
        for peer in peers:
            request_id = self._next_sync_request_id
            self._next_sync_request_id += 1
            self._sync_requests[request_id] = reported
            if len(self._sync_requests) > SYNC_REQUESTS_TRACKED_MAX:
                del self._sync_requests[next(iter(self._sync_requests))]
            self._send(peer, SyncRequest(view.epoch, request_id, known), after_persist)

    def _anti_entropy_tick(self) -> None:
        if self.now_s - self._last_anti_entropy_s < self.settings.anti_entropy_interval_s:
            return
        self._last_anti_entropy_s = self.now_s
        peers = self.shard_peers()
        if not peers:
            return
        peer = peers[self._anti_entropy_cursor % len(peers)]
        self._anti_entropy_cursor += 1
        self.counters.anti_entropy_rounds += 1
        self._request_sync_from((peer,))

    def _on_sync_request(self, sender: str, message: SyncRequest) -> None:
        view = self.view
        if view is None or message.epoch != view.epoch or not self._is_shard_peer(sender):
            return
        try:
            their_known = clock_from_pairs(message.known)
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        self.peer_known[sender] = their_known
        wires: list[WireVersion] = []
        versions: list[Version] = []
        behind_them = False
        ahead = False
        mine = self._relevant_known()
        for writer, my_seq in mine.items():
            their_seq = their_known.get(writer, 0)
            if my_seq <= their_seq:
                continue
            ahead = True
            for key, version in self.store.versions_after(writer, their_seq, my_seq):
                if self._owns_key(key):
                    wires.append(version_to_wire(key, version))
                    versions.append(version)
        if ahead:
            # Versions this replica holds beyond its own clock (a delta or a
            # hand-off landed out of order) go too: they may be what superseded
            # versions of the writers the delta advances the peer's clock for.
            # Without them the peer's clock claimed versions it never got, nor
            # anything newer (seed 150056: a list showed a value its session
            # had overwritten).
            for writer in list(self.store.writers()):
                if self._scope(writer) not in (Scope.LOCAL, Scope.OLD):
                    continue
                floor = max(mine.get(writer, 0), their_known.get(writer, 0))
                for key, version in self.store.versions_after(writer, floor, _SEQ_MAX):
                    if self._owns_key(key):
                        wires.append(version_to_wire(key, version))
                        versions.append(version)
        for writer, their_seq in their_known.items():
            if their_seq > mine.get(writer, 0) and self._scope(writer) in (Scope.LOCAL, Scope.OLD):
                behind_them = True
                break
        if ahead:
            after_persist = self._after_persist_for_versions(versions)
            chunks = chunk_versions(
                wires, self.settings.chunk_versions_max, self.settings.chunk_bytes_max
            )
            known_pairs = pairs_from_clock(mine)
            for index, chunk in enumerate(chunks):
                final = index == len(chunks) - 1
                delta = SyncDelta(
                    view.epoch,
                    message.request_id,
                    index,
                    final,
                    chunk,
                    known_pairs if final else [],
                )
                self._send(sender, delta, after_persist)
        if behind_them:
            # Ask back, but at most once per pull interval per peer: when neither
            # side can close the gap (versions the other's clock covers but it
            # no longer holds), answering every request with a request makes a
            # ping-pong, and every anti-entropy round adds another ball to it
            # until the messages eat the memory (seed 101268).
            last_s = self._sync_asked_s.get(sender, float("-inf"))
            if self.now_s - last_s >= self.settings.pull_interval_s:
                self._sync_asked_s[sender] = self.now_s
                self._request_sync_from((sender,))

    def _on_sync_delta(self, sender: str, message: SyncDelta) -> None:
        view = self.view
        if view is None or message.epoch != view.epoch or not self._is_shard_peer(sender):
            return
        staging_key = (sender, message.request_id)
        staged = self._staged_deltas.get(staging_key)
        if staged is None:
            staged = self._staged_deltas[staging_key] = _StagedDelta(started_s=self.now_s)
        if message.chunk_index in staged.chunks or not 0 <= message.chunk_index < 1_000_000:
            return
        if self._staged_delta_versions + len(message.versions) > self.settings.staged_versions_max:
            self._drop_staged(staging_key)
            return
        staged.chunks[message.chunk_index] = message.versions
        staged.versions += len(message.versions)
        self._staged_delta_versions += len(message.versions)
        if not message.final:
            return
        complete = len(staged.chunks) == message.chunk_index + 1
        chunks = self._drop_staged(staging_key)
        if not complete or chunks is None:
            return
        try:
            their_known = clock_from_pairs(message.known)
            parsed = [version_from_wire(wire) for index in sorted(chunks) for wire in chunks[index]]
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        for key, version in parsed:
            scope = self._scope(version.writer)
            if scope not in (Scope.LOCAL, Scope.OLD) or not self._owns_key(key):
                self.counters.peer_input_rejected += 1
                continue
            if self._apply_replicated(key, version):
                self.counters.versions_repaired += 1
            self.store.observe_lamport(version.lamport)
        # The delta holds the versions between the clock this replica reported
        # and the sender's: the clock may advance to the sender's only where
        # this replica still holds all it reported. A crash can lose versions
        # reported before it (not yet durable); advancing past them then would
        # claim them forever (seed 122277). A reply to a request this
        # incarnation did not send advances nothing.
        reported = self._sync_requests.pop(message.request_id, None)
        advanced = False
        for writer, seq in their_known.items():
            if reported is None or self.known.get(writer, 0) < reported.get(writer, 0):
                continue
            if seq > self.known.get(writer, 0) and self._scope(writer) in (Scope.LOCAL, Scope.OLD):
                self.known[writer] = seq
                advanced = True
        if advanced:
            self._meta_changed()
            self._drain_pending()
            self._retry_waiters()

    def _drop_staged(self, staging_key: tuple[str, int]) -> dict[int, list[WireVersion]] | None:
        staged = self._staged_deltas.pop(staging_key, None)
        if staged is None:
            return None
        self._staged_delta_versions -= staged.versions
        return staged.chunks

    def _expire_staged_deltas(self) -> None:
        horizon = self.now_s - 60.0
        for staging_key in [k for k, s in self._staged_deltas.items() if s.started_s < horizon]:
            self._drop_staged(staging_key)

    # -- tombstones --------------------------------------------------------------------------------

    def _collect_tombstones(self) -> None:
        if (
            self.now_s - self._last_tombstone_collection_s
            < self.settings.tombstone_collection_interval_s
        ):
            return
        self._last_tombstone_collection_s = self.now_s
        if (
            not self.store.tombstone_keys
            or self._change_in_progress()
            or self.now_s < self.tombstones_held_until_s
        ):
            return
        peers = self.shard_peers()
        reports = [self.peer_known.get(peer) for peer in peers]
        if any(report is None for report in reports):
            return
        # Collect only while this replica holds everything its peers reported:
        # a peer may hold a live version concurrent with a tombstone that has not
        # reached this replica yet; collecting the tombstone here first would let
        # that version show here while it stays hidden behind the tombstone there.
        for report in reports:
            assert report is not None
            for writer, seq in report.items():
                if seq > self.known.get(writer, 0) and self._scope(writer) in (
                    Scope.LOCAL,
                    Scope.OLD,
                ):
                    return
        clocks: list[Clock] = [self.known, *(r for r in reports if r is not None)]
        collected = 0
        for key in list(self.store.tombstone_keys):
            if collected >= self.settings.tombstones_per_collection_max:
                break
            entry = self.store.entry(key)
            if entry is None:
                self.store.tombstone_keys.discard(key)
                continue
            if all(self._seen_everywhere(version, clocks) for version in entry):
                # Only the tombstones go: a live version concurrent with a delete
                # stays (and shows once the tombstone is gone). Removing the whole
                # key instead diverged from a replica that had collected the
                # tombstone before that version arrived late and kept it (seed
                # 192969, a straggler's hand-off).
                tombstones = [version for version in entry if version.is_tombstone]
                if len(tombstones) == len(entry):
                    self.store.remove(key)
                else:
                    self.store.discard_versions(key, tombstones)
                self._key_changed(key)
                collected += 1
        self.counters.tombstones_collected += collected

    def _seen_everywhere(self, version: Version, clocks: list[Clock]) -> bool:
        for clock in clocks:
            if clock.get(version.writer, 0) < version.seq:
                return False
            for writer, seq in version.dep_items():
                if clock.get(writer, 0) < seq and self._scope(writer) in (Scope.LOCAL, Scope.OLD):
                    return False
        return True
