"""Shared state and bookkeeping of the replica state machine.

The replica is split by concern into mixins (client operations, replication,
reconfiguration) over this base, which owns the state they share and the
mechanics of a *step*: every public entry point begins a step, the handlers
record effects, and finishing the step returns them as one ``Output`` with at
most one persist batch. See ``replica.py`` for the theory of operation.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from causalkv.core.clock import Clock
from causalkv.core.coverage import HandoffReport
from causalkv.core.effects import (
    CompletedRequest,
    DurableMeta,
    OutgoingMessage,
    Output,
    PersistBatch,
)
from causalkv.core.keystore import Entry, KeyStore, Version
from causalkv.core.messages import PeerMessage
from causalkv.core.requests import ClientRequest, OperationResult
from causalkv.core.token import Token
from causalkv.core.view import View
from causalkv.core.wire import view_to_wire
from causalkv.core.writer import (
    INCARNATION_BYTES,
    Writer,
    make_writer,
    writer_epoch,
    writer_shard_index,
    writer_view_tag,
)

ACQUAINTANCES_MAX = 256
"""Most acquaintances a node keeps (the oldest are forgotten first)."""
DEPARTURES_MAX = 8
"""Most departure reports a node keeps (see ``ReplicaBase.departures``)."""


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """Timing and limits of one replica. All durations are in seconds of the
    clock the runtime passes in (wall time, or virtual time in simulation)."""

    causal_wait_s: float = 20.0
    """How long a request may wait for missing dependencies (SPEC: 20 s)."""
    anti_entropy_interval_s: float = 0.2
    pull_interval_s: float = 0.05
    """Minimum spacing of active pulls while requests wait for dependencies."""
    view_query_interval_s: float = 0.5
    view_gossip_interval_s: float = 1.0
    """How often a node asks one other node which view it serves."""
    acquaintance_gossip_interval_s: float = 5.0
    """How often a node asks one acquaintance (see ``ReplicaBase.acquaintances``)
    which view it serves."""
    view_change_retry_s: float = 0.3
    transfer_retry_s: float = 3.0
    straggler_wait_s: float = 5.0
    """How long a view change waits for unreachable nodes before committing without them."""
    view_change_wait_s: float = 60.0
    """How long ``PUT /view`` waits for its change to complete before answering 503."""
    commit_resend_s: float = 120.0
    """How long a coordinator keeps telling unreachable nodes about a committed view."""
    change_takeover_s: float = 15.0
    """A prepared change not committed after this long is driven by the node itself."""
    tombstone_collection_interval_s: float = 2.0
    tombstone_hold_after_abandon_s: float = 60.0
    waiting_requests_max: int = 10_000
    pending_versions_max: int = 200_000
    chunk_versions_max: int = 4_096
    chunk_bytes_max: int = 4 * 1024 * 1024
    staged_versions_max: int = 4_000_000
    tombstones_per_collection_max: int = 10_000

    def validate(self) -> None:
        """Refuse settings that would break the protocol's assumptions."""
        positive = {
            "causal_wait_s": self.causal_wait_s,
            "anti_entropy_interval_s": self.anti_entropy_interval_s,
            "pull_interval_s": self.pull_interval_s,
            "view_change_retry_s": self.view_change_retry_s,
            "transfer_retry_s": self.transfer_retry_s,
            "straggler_wait_s": self.straggler_wait_s,
            "acquaintance_gossip_interval_s": self.acquaintance_gossip_interval_s,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("waiting_requests_max", "chunk_versions_max", "chunk_bytes_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


class Scope(enum.IntEnum):
    """How a writer relates to this replica's current view and shard."""

    LOCAL = 0
    """Same view, same shard: its versions are replicated here."""
    OTHER = 1
    """Same view, another shard: none of this replica's business."""
    OLD = 2
    """An earlier (or a concurrent, losing) view: covered through hand-offs."""
    FUTURE = 3
    """A later view than this replica knows: it must learn that view first."""


class TokenStatus(enum.Enum):
    SATISFIED = "satisfied"
    UNMET = "unmet"
    NEEDS_NEWER_VIEW = "needs-newer-view"


@dataclass(slots=True)
class Waiter:
    request: ClientRequest
    deadline_s: float


@dataclass(slots=True)
class Counters:
    """Monotonic counters the runtime exports as metrics."""

    writes_accepted: int = 0
    versions_applied_from_peers: int = 0
    anti_entropy_rounds: int = 0
    versions_repaired: int = 0
    causal_waits: int = 0
    causal_wait_timeouts: int = 0
    peer_input_rejected: int = 0
    tombstones_collected: int = 0
    keys_transferred_out: int = 0
    keys_transferred_in: int = 0
    stale_versions_dropped: int = 0
    """Versions a complete hand-off from their owner showed to be superseded."""
    view_changes: int = 0


@dataclass(slots=True)
class _Step:
    now_s: float
    output: Output = field(default_factory=Output)
    dirty_keys: dict[str, Entry | None] = field(default_factory=dict)
    meta_dirty: bool = False
    reset: bool = False
    persist_id: int = 0


class ReplicaBase:
    """State shared by the replica's mixins."""

    def __init__(self, settings: ReplicaSettings, incarnation: bytes) -> None:
        settings.validate()
        if len(incarnation) != INCARNATION_BYTES:
            raise ValueError(f"incarnation must be {INCARNATION_BYTES} bytes")
        self.settings = settings
        self.incarnation = incarnation
        self.self_address: str | None = None
        self.view: View | None = None
        self.previous_view: View | None = None
        self.highest_epoch = 0
        self.shard_index: int | None = None
        self.writer: Writer | None = None
        self.writer_seq = 0
        self.known: Clock = {}
        self.store = KeyStore()
        self.counters = Counters()
        self.waiters: list[Waiter] = []
        self._scope_cache: dict[Writer, Scope] = {}
        self._step: _Step | None = None
        self._next_persist_id = 1
        self._durable_persist_id = 0
        self._own_persists: list[tuple[int, Writer, int]] = []
        """(persist id, own writer, its sequence) not yet durable, in order. The
        writer is named: after a view change the old writer's entries still
        wait, and must not count for the new writer (seed 151412: they made
        the new writer's first writes look durable, and reads exposed writes a
        crash then lost)."""
        self._durable_writer_seq = 0
        self.store_generation = 0
        """Counts changes to the store (and to the coverage of earlier views' writers):
        tells whether a hand-off computed earlier is stale."""
        self.tombstones_held_until_s = float("-inf")
        """After a change with hand-offs is abandoned, copies of keys may briefly live
        on nodes that will not own them: no tombstone is collected until then."""
        self._restored_tombstone_hold_s: float | None = None
        """On a restart: what remained of the hold above when it was last persisted
        (clock readings do not carry over a restart); applied at the first step."""
        self.departures: dict[int, HandoffReport] = {}
        """The reports this node made of the shards it left (by the epoch of the
        view it left), kept while it still holds that data: every hand-off it
        sends passes them on, so the data's next owners can vouch for it even if
        the hand-off that first carried them was lost (seed 20206)."""
        self.acquaintances: dict[str, None] = {}
        """Nodes that proposals named while this node served no view, and that no
        view it served has named since (insertion-ordered, bounded). Two first
        views committed at once over disjoint members share no view to gossip
        through; asking these nodes now and then is how such clusters meet."""

    # -- steps ---------------------------------------------------------------------------------

    def _begin(self, now_s: float) -> _Step:
        assert self._step is None, "steps do not nest"
        self._step = _Step(now_s)
        if self._restored_tombstone_hold_s is not None:
            self.tombstones_held_until_s = now_s + self._restored_tombstone_hold_s
            self._restored_tombstone_hold_s = None
        return self._step

    @property
    def now_s(self) -> float:
        assert self._step is not None
        return self._step.now_s

    def _finish(self) -> Output:
        step = self._step
        assert step is not None
        self._step = None
        output = step.output
        if step.dirty_keys or step.meta_dirty or step.reset or step.persist_id:
            persist_id = step.persist_id or self._allocate_persist_id()
            output.persist.append(
                PersistBatch(
                    persist_id, step.dirty_keys, self._durable_meta(step.now_s), reset=step.reset
                )
            )
            if self.writer is not None and self.writer_seq > self._durable_writer_seq:
                self._own_persists.append((persist_id, self.writer, self.writer_seq))
        return output

    def _allocate_persist_id(self) -> int:
        persist_id = self._next_persist_id
        self._next_persist_id += 1
        return persist_id

    def _step_persist_id(self) -> int:
        """The persist id of the current step's batch (items that need it wait for it)."""
        step = self._step
        assert step is not None
        if not step.persist_id:
            step.persist_id = self._allocate_persist_id()
        return step.persist_id

    def _after_persist_for_state(self) -> int:
        """The persist id after which everything this node holds now is durable
        (0 if it is already)."""
        step = self._step
        assert step is not None
        if step.dirty_keys or step.meta_dirty or step.reset or step.persist_id:
            return self._step_persist_id()
        last = self._next_persist_id - 1
        return last if last > self._durable_persist_id else 0

    def mark_durable(self, persist_id: int) -> None:
        """The runtime made every persist batch up to ``persist_id`` durable."""
        if persist_id > self._durable_persist_id:
            self._durable_persist_id = persist_id
        while self._own_persists and self._own_persists[0][0] <= persist_id:
            _, writer, seq = self._own_persists.pop(0)
            if writer == self.writer and seq > self._durable_writer_seq:
                self._durable_writer_seq = seq

    def _key_changed(self, key: str, affects_handoff: bool = True) -> None:
        """Persist the key's new state; ``affects_handoff`` marks hand-offs computed
        before this change as stale (not for data handed to this node for a pending
        change: its senders deliver that to every new owner themselves)."""
        assert self._step is not None
        self._step.dirty_keys[key] = self.store.entry(key)
        if affects_handoff:
            self.store_generation += 1

    def _meta_changed(self) -> None:
        assert self._step is not None
        self._step.meta_dirty = True

    def _send(self, destination: str, message: PeerMessage, after_persist: int = 0) -> None:
        assert self._step is not None
        if destination == self.self_address:
            return
        self._step.output.messages.append(OutgoingMessage(destination, message, after_persist))

    def _complete(self, request_id: int, result: OperationResult, after_persist: int = 0) -> None:
        assert self._step is not None
        self._step.output.results.append(CompletedRequest(request_id, result, after_persist))

    def _after_persist_for(self, token: Token) -> int:
        """A reply exposing this node's own writes (of its current writer, or of
        an earlier one still waiting for its disk) must wait until they are
        durable: the persist id to wait for, 0 for none."""
        clock = token.clock
        writer = self.writer
        wait = 0
        matched: set[Writer] = set()
        for persist_id, own_writer, own_seq in self._own_persists:
            if own_writer in matched:
                continue
            needed = clock.get(own_writer, 0)
            if needed == 0 or (own_writer == writer and needed <= self._durable_writer_seq):
                continue
            if own_seq >= needed:
                matched.add(own_writer)
                wait = max(wait, persist_id)
        if (
            writer is not None
            and writer not in matched
            and clock.get(writer, 0) > self._durable_writer_seq
        ):
            return self._step_persist_id()
        return wait

    def _after_persist_for_versions(self, versions: list[Version]) -> int:
        writer = self.writer
        if not self._own_persists:
            # Every earlier batch is durable: only this step's own writes wait.
            if writer is None:
                return 0
            highest = max((v.seq for v in versions if v.writer == writer), default=0)
            return 0 if highest <= self._durable_writer_seq else self._step_persist_id()
        clock: dict[Writer, int] = {}
        for version in versions:
            if version.seq > clock.get(version.writer, 0):
                clock[version.writer] = version.seq
        return self._after_persist_for(Token(clock))

    def _durable_meta(self, now_s: float | None = None) -> DurableMeta:
        target, reports = self._reports_to_persist()
        return DurableMeta(
            incarnation=self.incarnation,
            self_address=self.self_address,
            view=None if self.view is None else view_to_wire(self.view),
            previous_view=None if self.previous_view is None else view_to_wire(self.previous_view),
            highest_epoch=self.highest_epoch,
            writer=self.writer,
            writer_seq=self.writer_seq,
            known=dict(self.known),
            lamport=self.store.lamport,
            foreign_keys=self._may_hold_foreign_keys(),
            handoff_target=target,
            handoff_reports=reports,
            carried_reports=self._carried_reports_to_persist(),
            tombstone_hold_s=self._tombstone_hold_remaining_s(now_s),
            acquaintances=tuple(self.acquaintances),
            departures=dict(self.departures),
        )

    def _tombstone_hold_remaining_s(self, now_s: float | None) -> float:
        if self._restored_tombstone_hold_s is not None:
            return self._restored_tombstone_hold_s
        if now_s is None or self.tombstones_held_until_s == float("-inf"):
            return 0.0
        return max(0.0, self.tombstones_held_until_s - now_s)

    # -- scopes and tokens ---------------------------------------------------------------------

    def _scope(self, writer: Writer) -> Scope:
        scope = self._scope_cache.get(writer)
        if scope is None:
            scope = self._compute_scope(writer)
            if len(self._scope_cache) < 65_536:
                self._scope_cache[writer] = scope
        return scope

    def _compute_scope(self, writer: Writer) -> Scope:
        view = self.view
        epoch = writer_epoch(writer)
        if view is None:
            return Scope.FUTURE
        if epoch > view.epoch:
            return Scope.FUTURE
        if epoch == view.epoch and writer_view_tag(writer) == view.view_tag:
            if writer_shard_index(writer) == self.shard_index:
                return Scope.LOCAL
            return Scope.OTHER
        return Scope.OLD

    def _token_status(self, token: Token) -> TokenStatus:
        view = self.view
        if view is None or token.epoch_floor > view.epoch:
            return TokenStatus.NEEDS_NEWER_VIEW
        known = self.known
        status = TokenStatus.SATISFIED
        for writer, seq in token.clock.items():
            scope = self._scope(writer)
            if scope is Scope.OTHER:
                continue
            if scope is Scope.FUTURE:
                return TokenStatus.NEEDS_NEWER_VIEW
            if known.get(writer, 0) < seq:
                status = TokenStatus.UNMET
        return status

    def _dependencies_applied(self, deps: Iterable[tuple[Writer, int]]) -> bool:
        """Whether a version's shard-relevant dependencies are all applied here."""
        known = self.known
        for writer, seq in deps:
            if known.get(writer, 0) >= seq:
                continue
            if self._scope(writer) is not Scope.OTHER:
                return False
        return True

    def _relevant_known(self) -> Clock:
        """``known`` restricted to writers whose versions this replica holds."""
        return {w: s for w, s in self.known.items() if self._scope(w) in (Scope.LOCAL, Scope.OLD)}

    def _set_membership(self, view: View | None) -> None:
        """Adopt ``view`` as the served view (scopes, shard, writer)."""
        self.view = view
        self._scope_cache.clear()
        if view is None or self.self_address is None:
            self.shard_index = None
        else:
            self.shard_index = view.shard_index_of_node(self.self_address)
        if view is not None and self.shard_index is not None:
            writer = make_writer(view.epoch, view.view_tag, self.shard_index, self.incarnation)
            if writer != self.writer:
                self.writer = writer
                self.writer_seq = self.known.get(writer, 0)
                self._durable_writer_seq = self.writer_seq
        else:
            self.writer = None
            self.writer_seq = 0
        if view is not None and view.epoch > self.highest_epoch:
            self.highest_epoch = view.epoch
        if view is not None and self.acquaintances:
            for address in view.all_addresses():
                self.acquaintances.pop(address, None)

    def shard_peers(self) -> tuple[str, ...]:
        """The other replicas of this node's shard in the served view."""
        if self.view is None or self.shard_index is None:
            return ()
        return tuple(a for a in self.view.replicas(self.shard_index) if a != self.self_address)

    # -- hooks the mixins provide to each other --------------------------------------------------

    def _retry_waiters(self) -> None:
        raise NotImplementedError

    def _drain_pending(self) -> None:
        raise NotImplementedError

    def _request_sync_from(self, peers: tuple[str, ...]) -> None:
        raise NotImplementedError

    def _reset_replication(self) -> None:
        raise NotImplementedError

    def _change_pending(self) -> bool:
        raise NotImplementedError

    def _change_in_progress(self) -> bool:
        raise NotImplementedError

    def _pending_view(self) -> View | None:
        raise NotImplementedError

    def _may_hold_foreign_keys(self) -> bool:
        raise NotImplementedError

    def _dispatch(self, sender: str, message: PeerMessage) -> None:
        raise NotImplementedError

    def _reports_to_persist(self) -> tuple[tuple[int, bytes] | None, dict[str, HandoffReport]]:
        raise NotImplementedError

    def _carried_reports_to_persist(self) -> dict[str, HandoffReport]:
        raise NotImplementedError
