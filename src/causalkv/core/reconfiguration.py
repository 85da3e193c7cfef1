"""View changes: proposals, hand-offs and commits.

Theory of operation
-------------------
A view change moves the cluster from its committed view to a *proposal*, a
view with a higher ``(epoch, digest)``. Whichever node receives ``PUT /view``
coordinates; many nodes may coordinate the same proposal at once (outside test
suites send the same view to every node), which is harmless because every
message is idempotent and a proposal is identified by its content.

1. **Prepare.** The coordinator sends ``Prepare`` to every node of the old and
   the new view. A node adopts the highest proposal it has seen, stops
   accepting writes (they wait, see ``client_operations.py``), and hands off:
   for every node of the new view it sends, in chunks, the versions of the keys
   that node will own, with a *report* (its clock and the view it held them
   under). Co-replicas of its old shard already hold its keys and get only
   keys its old shard did not own. Once every recipient has made the hand-off
   durable and acknowledged it, the node answers ``Prepared``.
2. **Commit.** When every node has prepared (or, after ``straggler_wait_s``,
   when every old and every new shard has at least one prepared node), the
   coordinator commits locally and sends ``Commit``. A node that commits serves
   the new view: new writer identities, and a clock for the old writers rebuilt
   from the hand-off reports (``coverage.py``), so metadata issued before the
   change keeps its meaning. Keys it no longer owns are dropped once their
   hand-off is acknowledged. The coordinator answers its client once the new
   members acknowledged the commit.
3. **Stragglers.** A node that missed the change learns it whenever it talks to
   a node of a newer view (``NewerView``) or is re-sent the commit, hands off
   whatever only it had (its report raises the receivers' coverage, releasing
   clients that waited on those writes), and drops what it no longer owns.
   Until it has, every hand-off it sends also carries the reports it made of
   the shards it left (``departures``): the hand-off that first carried them
   may have been lost to a restart, and nothing else vouches for them.

Competing proposals resolve to the highest ``(epoch, digest)`` wherever they
meet; a committed view always beats an uncommitted one. Nodes meet through the
views they serve and, for first views that share none, through the nodes that
proposals named before they served a view (``acquaintances``). A node stuck on a
proposal whose coordinators vanished drives it to commit itself after
``change_takeover_s``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from causalkv.core.base import ACQUAINTANCES_MAX, DEPARTURES_MAX, ReplicaBase
from causalkv.core.clock import Clock, merge
from causalkv.core.coverage import HandoffReport, coverage_from_reports
from causalkv.core.keystore import Version, winner_of
from causalkv.core.messages import (
    Commit,
    CommitAck,
    NewerView,
    PeerMessage,
    Prepare,
    Prepared,
    Superseded,
    TransferAck,
    TransferChunk,
    ViewQuery,
    WireReport,
    WireVersion,
)
from causalkv.core.placement import HashRing, ring_for, shard_within
from causalkv.core.replication import chunk_versions
from causalkv.core.requests import OperationResult, ResultKind
from causalkv.core.token import Token
from causalkv.core.view import SHARDS_PER_VIEW_MAX, View
from causalkv.core.wire import (
    PeerInputError,
    clock_from_pairs,
    pairs_from_clock,
    version_from_wire,
    version_to_wire,
    view_from_wire,
    view_to_wire,
)

ProposalKey = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class OwnerSnapshot:
    """What a complete hand-off from a node that owned keys says about them: for
    every key its shard owned in its view, it sent every version it held, and
    its clock covers every version it ever held (or saw superseded)."""

    ring: HashRing
    shard: int
    known: Clock

    def rules_out(self, key: str, version: Version) -> bool:
        """True when the sender owned ``key`` and its clock covers ``version``:
        unless the sender handed that very version over, it is superseded."""
        return self.known.get(version.writer, 0) >= version.seq and (
            self.ring.shard_index_for(key) == self.shard
        )


@dataclass(slots=True)
class PendingChange:
    proposal: View
    previous: View | None
    started_s: float
    coordinators: set[str] = field(default_factory=set)
    reports: dict[str, HandoffReport] = field(default_factory=dict)
    snapshots: list[OwnerSnapshot] = field(default_factory=list)


@dataclass(slots=True)
class OutgoingTransfer:
    destination: str
    target: View
    generation: int
    chunks: list[TransferChunk]
    last_sent_s: float
    acked: bool = False
    versions: int = 0
    value_bytes: int = 0
    own_seq_max: int = 0
    """Highest sequence number of this node's own writer in the transfer: the
    chunks go out only once that is durable, or a crash could reissue it."""


@dataclass(slots=True)
class HandoffProgress:
    """What this node has handed off for its latest view change (for progress reports)."""

    target: ProposalKey = (0, b"")
    started_s: float = 0.0
    transfers_total: int = 0
    transfers_acked: int = 0
    versions_total: int = 0
    versions_acked: int = 0
    bytes_total: int = 0
    bytes_acked: int = 0


@dataclass(slots=True)
class _StagedTransfer:
    chunks: dict[int, TransferChunk] = field(default_factory=dict)
    versions: int = 0
    started_s: float = 0.0


@dataclass(slots=True)
class Coordination:
    proposal: View
    previous: View | None
    started_s: float
    prepared: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    committed_s: float | None = None
    commit_persist_id: int = 0
    waiting: list[tuple[int, float]] = field(default_factory=list)
    """(request id, deadline) of the clients waiting for this change."""
    last_sent_s: float = float("-inf")
    answered: bool = False

    def participants(self) -> set[str]:
        addresses = set(self.proposal.all_addresses())
        if self.previous is not None:
            addresses.update(self.previous.all_addresses())
        return addresses


@dataclass(slots=True)
class Ledger:
    """Hand-off reports for the transition into the served view."""

    target: ProposalKey
    reports: dict[str, HandoffReport] = field(default_factory=dict)
    snapshots: list[OwnerSnapshot] = field(default_factory=list)
    """Of the transfers received for this view (not persisted: an optimisation
    of safety, see ``_drop_ruled_out``, that a restart may lose)."""


def _wire_or_none(view: View | None) -> object:
    return None if view is None else view_to_wire(view)


class ReconfigurationMixin(ReplicaBase):
    change: PendingChange | None
    coordinations: dict[ProposalKey, Coordination]
    outgoing: dict[tuple[str, ProposalKey, int], OutgoingTransfer]
    _incoming: dict[tuple[str, ProposalKey, int], _StagedTransfer]
    _incoming_versions: int
    ledger: Ledger | None
    _generation: int
    _newer_view_sent_s: dict[str, float]
    _holding_foreign_keys: bool
    handoff_progress: HandoffProgress
    peer_known: dict[str, Clock]
    _gossip_cursor: int
    _last_view_gossip_s: float
    _acquaintance_cursor: int
    _last_acquaintance_gossip_s: float
    _restored_reports: dict[ProposalKey, dict[str, HandoffReport]]
    _transfer_basis: dict[ProposalKey, int]
    """The store generation each target's hand-off was computed from."""
    carried_reports: dict[str, HandoffReport]
    """Reports describing hand-off data this node holds without owning it (from a
    change it abandoned): passed on with that data, so its next owners can vouch
    for it even when the node that first handed it over has dropped it."""

    def _init_reconfiguration(self) -> None:
        self.handoff_progress = HandoffProgress()
        self.change = None
        self.coordinations = {}
        self.outgoing = {}
        self._incoming = {}
        self._incoming_versions = 0
        self.ledger = None
        self._generation = 0
        self._newer_view_sent_s = {}
        self._gossip_cursor = 0
        self._last_view_gossip_s = float("-inf")
        self._acquaintance_cursor = 0
        self._last_acquaintance_gossip_s = float("-inf")
        self._restored_reports = {}
        self._transfer_basis = {}
        self.carried_reports = {}
        self._holding_foreign_keys = False

    # -- queries used by the other mixins ----------------------------------------------------------

    def _change_pending(self) -> bool:
        return self.change is not None

    def _change_in_progress(self) -> bool:
        return self.change is not None or any(not t.acked for t in self.outgoing.values())

    def _pending_view(self) -> View | None:
        return None if self.change is None else self.change.proposal

    def _may_hold_foreign_keys(self) -> bool:
        return self._holding_foreign_keys

    def _reports_to_persist(self) -> tuple[ProposalKey | None, dict[str, HandoffReport]]:
        if self.change is not None:
            return self.change.proposal.proposal_key, dict(self.change.reports)
        if self._restored_reports:
            # Restored after a restart, for a change not re-adopted yet: keep them.
            target = max(self._restored_reports)
            return target, dict(self._restored_reports[target])
        if self.ledger is not None:
            return self.ledger.target, dict(self.ledger.reports)
        return None, {}

    def _carried_reports_to_persist(self) -> dict[str, HandoffReport]:
        return dict(self.carried_reports)

    def _restore_reports(
        self, target: ProposalKey | None, reports: dict[str, HandoffReport]
    ) -> None:
        if target is None or not reports:
            return
        if self.view is not None and self.view.proposal_key == target:
            self.ledger = Ledger(target, dict(reports))
        else:
            self._restored_reports[target] = dict(reports)

    # -- local delivery ------------------------------------------------------------------------------

    def _deliver(self, destination: str, message: PeerMessage, after_persist: int = 0) -> None:
        """Send a message, or handle it at once when it is addressed to this node."""
        if destination == self.self_address:
            self._dispatch(destination, message)
        else:
            self._send(destination, message, after_persist)

    # -- proposing -------------------------------------------------------------------------------------

    def _propose(self, request_id: int, view: View) -> None:
        current = self.view
        self._meet(view)
        if current is not None and view.same_content(current) and self.change is None:
            for address in current.all_addresses():
                self._send_newer_view(address, force=True)
            self._complete(request_id, OperationResult(ResultKind.OK))
            return
        target: View | None = None
        if self.change is not None and view.same_content(self.change.proposal):
            target = self.change.proposal
        else:
            for coordination in self.coordinations.values():
                if view.same_content(coordination.proposal) and not coordination.answered:
                    target = coordination.proposal
                    break
        if target is None:
            epoch = max(self.highest_epoch, 0 if current is None else current.epoch) + 1
            if self.change is not None:
                epoch = max(epoch, self.change.proposal.epoch + 1)
            target = view.with_epoch(epoch)
        coordination = self._coordination_for(target, self.view)
        coordination.waiting.append((request_id, self.now_s + self.settings.view_change_wait_s))
        self._advance_coordination(coordination, force_send=True)

    def _coordination_for(self, proposal: View, previous: View | None) -> Coordination:
        key = proposal.proposal_key
        coordination = self.coordinations.get(key)
        if coordination is None:
            coordination = Coordination(proposal, previous, self.now_s)
            self.coordinations[key] = coordination
            if proposal.epoch > self.highest_epoch:
                self.highest_epoch = proposal.epoch
                self._meta_changed()
        return coordination

    def _advance_coordination(self, coordination: Coordination, force_send: bool = False) -> None:
        now_s = self.now_s
        due = force_send or now_s - coordination.last_sent_s >= self.settings.view_change_retry_s
        participants = coordination.participants()
        proposal = coordination.proposal
        if coordination.waiting and not coordination.answered:
            self._expire_view_change_waiters(coordination)
        if coordination.committed_s is None:
            if due:
                coordination.last_sent_s = now_s
                message = Prepare(
                    view_to_wire(proposal),
                    None if coordination.previous is None else view_to_wire(coordination.previous),
                    self.self_address or "",
                )
                # Everyone, prepared or not: a participant that restarted lost its
                # pending change and must hear the proposal again to accept hand-offs.
                for address in sorted(participants):
                    self._deliver(address, message)
            if coordination.committed_s is None and self._may_commit(coordination, participants):
                self._commit_as_coordinator(coordination)
            return
        if due:
            coordination.last_sent_s = now_s
            commit = Commit(view_to_wire(proposal), _wire_or_none(coordination.previous))  # type: ignore[arg-type]
            for address in sorted(participants - coordination.acknowledged):
                if address != self.self_address:
                    self._send(address, commit)
        members = set(proposal.all_addresses())
        waited_s = now_s - coordination.committed_s
        if not coordination.answered and (
            members <= coordination.acknowledged or waited_s >= self.settings.straggler_wait_s
        ):
            coordination.answered = True
            for request_id, _ in coordination.waiting:
                self._complete(
                    request_id, OperationResult(ResultKind.OK), coordination.commit_persist_id
                )
            coordination.waiting.clear()
        if coordination.answered and (
            participants <= coordination.acknowledged or waited_s >= self.settings.commit_resend_s
        ):
            del self.coordinations[proposal.proposal_key]

    def _expire_view_change_waiters(self, coordination: Coordination) -> None:
        still: list[tuple[int, float]] = []
        for request_id, deadline_s in coordination.waiting:
            if deadline_s <= self.now_s:
                self._complete(
                    request_id,
                    OperationResult(
                        ResultKind.VIEW_CHANGE_TIMEOUT,
                        detail="the view change has not completed yet; it goes on in the background",
                    ),
                )
            else:
                still.append((request_id, deadline_s))
        coordination.waiting = still

    def _may_commit(self, coordination: Coordination, participants: set[str]) -> bool:
        prepared = coordination.prepared
        if participants <= prepared:
            return True
        if self.now_s - coordination.started_s < self.settings.straggler_wait_s:
            return False
        for view in (coordination.previous, coordination.proposal):
            if view is None:
                continue
            for index in range(len(view.shards)):
                if not any(address in prepared for address in view.replicas(index)):
                    return False
        return True

    def _commit_as_coordinator(self, coordination: Coordination) -> None:
        proposal = coordination.proposal
        current = self.view
        if current is None or proposal.proposal_key > current.proposal_key:
            self._commit(proposal, coordination.previous)
        coordination.committed_s = self.now_s
        coordination.commit_persist_id = self._step_persist_id()
        if self.self_address is not None:
            coordination.acknowledged.add(self.self_address)
        coordination.last_sent_s = float("-inf")
        self._advance_coordination(coordination)

    def _fail_coordination(
        self, coordination: Coordination, winner: View, winner_committed: bool
    ) -> None:
        del self.coordinations[coordination.proposal.proposal_key]
        if winner.same_content(coordination.proposal):
            if self.view is not None and self.view.proposal_key == winner.proposal_key:
                for request_id, _ in coordination.waiting:
                    self._complete(request_id, OperationResult(ResultKind.OK))
            else:
                target = self._coordination_for(winner, coordination.previous)
                target.waiting.extend(coordination.waiting)
            return
        if winner_committed:
            # This node proposed on a view that had already moved on (it was stale,
            # or lost a race with a commit): propose again on top of the winner.
            # Never on top of an uncommitted winner: two such proposals would
            # leapfrog each other forever.
            epoch = max(self.highest_epoch, winner.epoch) + 1
            retry = self._coordination_for(coordination.proposal.with_epoch(epoch), winner)
            retry.waiting.extend(coordination.waiting)
            return
        for request_id, _ in coordination.waiting:
            self._complete(
                request_id,
                OperationResult(
                    ResultKind.VIEW_CONFLICT,
                    detail="a concurrent view change with a different view won",
                ),
            )

    # -- participant: prepare ------------------------------------------------------------------------

    def _on_prepare(self, sender: str, message: Prepare) -> None:
        try:
            proposal = view_from_wire(message.proposal)
            previous = None if message.previous is None else view_from_wire(message.previous)
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        coordinator = message.coordinator or sender
        key = proposal.proposal_key
        current = self.view
        self._meet(proposal, previous, coordinator)
        if current is not None and proposal.epoch <= current.epoch:
            # A committed view beats any proposal of the same or a lower epoch.
            if key == current.proposal_key:
                self._deliver(coordinator, Prepared(proposal.epoch, proposal.digest))
                self._deliver(coordinator, CommitAck(proposal.epoch, proposal.digest))
            else:
                self._deliver(
                    coordinator,
                    Superseded(proposal.epoch, proposal.digest, view_to_wire(current), True),
                )
            return
        if previous is not None and (
            current is None or previous.proposal_key > current.proposal_key
        ):
            # The proposal was made on a view this node has not committed yet (it
            # missed that commit): serve that view first, so the hand-off comes
            # from the view the coordinator counts on. Prepared from an older one
            # would vouch for none of the shard this node owns in that view
            # (seed 141503: nobody covered that shard's writers again).
            self._commit(previous, None)
            current = self.view
        change = self.change
        if change is not None:
            pending_key = change.proposal.proposal_key
            if key < pending_key:
                self._deliver(
                    coordinator,
                    Superseded(
                        proposal.epoch, proposal.digest, view_to_wire(change.proposal), False
                    ),
                )
                return
            if key == pending_key:
                change.coordinators.add(coordinator)
                if self._transfers_done(key) and self._transfers_stale(key):
                    self._start_transfers(change.proposal)
                if self._transfers_done(key):
                    self._deliver(coordinator, Prepared(proposal.epoch, proposal.digest))
                return
            self._abandon_change()
        if proposal.epoch > self.highest_epoch:
            self.highest_epoch = proposal.epoch
            self._meta_changed()
        self.change = PendingChange(proposal, previous, self.now_s, {coordinator})
        restored = self._restored_reports.pop(key, None)
        if restored:
            # Reports received before a restart: their transfers were acknowledged
            # and will not come again.
            self.change.reports.update(restored)
        self._start_transfers(proposal)
        if self._transfers_done(key):
            self._deliver(coordinator, Prepared(proposal.epoch, proposal.digest))

    def _abandon_change(self) -> None:
        change = self.change
        if change is None:
            return
        self.change = None
        key = change.proposal.proposal_key
        handed_off = any(k[1] == key for k in self.outgoing)
        for transfer_key in [k for k, t in self.outgoing.items() if k[1] == key]:
            del self.outgoing[transfer_key]
        # The data handed over for the abandoned proposal stays: that proposal may
        # have committed elsewhere, its senders may have dropped their copies, and
        # this may be the last one. It goes back at once to its owners in the view
        # this node serves (who keep what they have not superseded) and is dropped
        # once they acknowledge it; a stale copy must not outlive the owners'
        # tombstones. It also travels on with the next hand-off, with the reports
        # that vouch for it. Meanwhile no tombstone is collected here.
        scope_shard = (
            None
            if self.self_address is None
            else change.proposal.shard_index_of_node(self.self_address)
        )
        if scope_shard is not None:
            scope = (change.proposal.ring.shard_names, scope_shard)
            for origin, report in change.reports.items():
                self._carry_report(origin, report, scope)
        if change.reports or handed_off or self._holding_foreign_keys:
            # Copies of keys may sit on nodes that will not own them until those
            # nodes return them (well under a second normally).
            self.tombstones_held_until_s = self.now_s + self.settings.tombstone_hold_after_abandon_s
        if self.view is not None and self._holding_foreign_keys:
            self._start_transfers(self.view)
        self._meta_changed()
        self._retry_waiters()

    def _carry_report(
        self, origin: str, report: HandoffReport, scope: tuple[tuple[str, ...], int]
    ) -> None:
        """Keep ``report`` to pass on with the data. It was received for (or, if
        second-hand, accepted as covering) the keys of ``scope``, this node's shard
        in the abandoned proposal, and from now on vouches for those keys only."""
        name = (
            origin if origin.startswith("carried:") else f"carried:{origin}:{report.source_epoch}"
        )
        name = f"{name.split('@', 1)[0]}@{_scope_label(scope)}"
        known = report.known
        existing = self.carried_reports.get(name)
        if existing is not None:
            known = merge(existing.known, known)
        self.carried_reports[name] = replace(
            report, known=known, first_hand=False, complete=True, scope=scope
        )

    def _transfers_done(self, target: ProposalKey) -> bool:
        return all(t.acked for k, t in self.outgoing.items() if k[1] == target)

    def _transfer_after_persist(self, transfer: OutgoingTransfer) -> int:
        if transfer.own_seq_max == 0 or self.writer is None:
            return 0
        return self._after_persist_for(Token({self.writer: transfer.own_seq_max}))

    def _transfers_stale(self, target: ProposalKey) -> bool:
        basis = self._transfer_basis.get(target)
        return basis is not None and basis != self.store_generation

    def _start_transfers(self, target: View) -> None:
        """Hand this node's keys to their owners in ``target``."""
        self._transfer_basis[target.proposal_key] = self.store_generation
        current = self.view
        old_shard = self.shard_index
        co_replicas: set[str] = set()
        if current is not None and old_shard is not None:
            co_replicas = set(current.replicas(old_shard))
        if current is None and len(self.store) == 0:
            return
        all_by_shard: dict[int, list[WireVersion]] = {}
        foreign_by_shard: dict[int, list[WireVersion]] = {}
        owned_by_shard: dict[int, list[tuple[str, Version]]] = {}
        foreign_keys: set[str] = set()
        for key, entry in self.store.items():
            shard = target.shard_index_for_key(key)
            wires = [version_to_wire(key, version) for version in entry]
            all_by_shard.setdefault(shard, []).extend(wires)
            owned_before = (
                current is not None
                and old_shard is not None
                and current.shard_index_for_key(key) == old_shard
            )
            if owned_before:
                owned_by_shard.setdefault(shard, []).extend((key, v) for v in entry)
            else:
                foreign_by_shard.setdefault(shard, []).extend(wires)
                foreign_keys.add(key)
        carried = [
            _report_to_wire(name, report)
            for name, report in sorted(self.carried_reports.items())
            if report.scope is not None
        ]
        report_known = pairs_from_clock(self._relevant_known()) if current is not None else []
        report_own_seq = (
            0 if current is None or self.writer is None else self.known.get(self.writer, 0)
        )
        source_epoch = 0 if current is None else current.epoch
        source_digest = b"" if current is None else current.digest
        source_shard = -1 if old_shard is None else old_shard
        source_shard_count = 0 if current is None else len(current.shards)
        source_incarnation = self.incarnation
        source_names = [] if current is None else list(current.ring.shard_names)
        own_report = self._own_report_as_leaver()
        if own_report is not None:
            # This node left its shard in the view it serves but still holds that
            # shard's data (a restart forgot the hand-off): hand it over with the
            # report it made when it left, or nobody could vouch for its writes.
            report_known = pairs_from_clock(own_report.known)
            source_epoch = own_report.source_epoch
            source_digest = own_report.source_view_tag.to_bytes(2, "big")  # read as the tag
            source_shard = own_report.source_shard
            source_shard_count = own_report.source_shard_count
            source_incarnation = own_report.source_incarnation
            source_names = []
        # The reports of shards this node left and whose data it still holds go
        # along too: the hand-off that first carried them may never have arrived
        # (its receiver was down, then this node restarted and forgot it).
        carried.extend(
            _report_to_wire(f"departed:{epoch}", report)
            for epoch, report in sorted(self.departures.items())
            if report != own_report
        )
        for address in target.all_addresses():
            if address == self.self_address:
                continue
            target_shard = target.shard_index_of_node(address)
            assert target_shard is not None
            complete = address not in co_replicas
            if not complete:
                # A co-replica of the old shard holds that shard's keys, but only as
                # far as replication has reached it: writes still in flight to it
                # would be lost once this node drops its copy. Send every owned
                # version above the co-replica's last reported clock (a lower bound
                # of what it holds), plus any keys the old shard did not own.
                peer_clock = self.peer_known.get(address)
                versions = list(foreign_by_shard.get(target_shard, []))
                versions.extend(
                    version_to_wire(key, version)
                    for key, version in owned_by_shard.get(target_shard, [])
                    if peer_clock is None or version.seq > peer_clock.get(version.writer, 0)
                )
            else:
                versions = all_by_shard.get(target_shard, [])
                if not versions and source_shard < 0:
                    continue
            self._generation += 1
            chunks_of_versions = chunk_versions(
                versions, self.settings.chunk_versions_max, self.settings.chunk_bytes_max
            )
            chunks = [
                TransferChunk(
                    target.epoch,
                    target.digest,
                    self._generation,
                    index,
                    len(chunks_of_versions),
                    chunk,
                    source_epoch,
                    source_digest,
                    source_shard,
                    source_incarnation,
                    report_known,
                    source_shard_count,
                    sorted({wire.key for wire in chunk if wire.key in foreign_keys}),
                    carried if index == 0 else [],
                    complete,
                    source_names if index == 0 else [],
                )
                for index, chunk in enumerate(chunks_of_versions)
            ]
            # The report claims this node's own writes too: none may go out
            # before it is durable, or a crash could make the claim a phantom.
            own_seq_max = 0 if self.writer is None else report_own_seq
            transfer = OutgoingTransfer(
                address,
                target,
                self._generation,
                chunks,
                self.now_s,
                versions=len(versions),
                value_bytes=sum(len(v.key) + len(v.value or "") for v in versions),
                own_seq_max=own_seq_max,
            )
            self.outgoing[(address, target.proposal_key, self._generation)] = transfer
            progress = self.handoff_progress
            if progress.target != target.proposal_key:
                self.handoff_progress = progress = HandoffProgress(target.proposal_key, self.now_s)
            progress.transfers_total += 1
            progress.versions_total += len(versions)
            progress.bytes_total += transfer.value_bytes
            self.counters.keys_transferred_out += len(versions)
            after_persist = self._transfer_after_persist(transfer)
            for chunk in chunks:
                self._send(address, chunk, after_persist)

    def _own_report_as_leaver(self) -> HandoffReport | None:
        """The report this node made of its old shard when it committed a view
        it is not a member of (kept in the ledger, so it survives a restart)."""
        current = self.view
        ledger = self.ledger
        if (
            current is None
            or self.shard_index is not None
            or ledger is None
            or ledger.target != current.proposal_key
            or self.self_address is None
        ):
            return None
        report = ledger.reports.get(self.self_address)
        if report is None or not report.first_hand or report.source_shard < 0:
            return None
        return report

    # -- participant: commit --------------------------------------------------------------------------

    def _on_commit(self, sender: str, message: Commit) -> None:
        try:
            proposal = view_from_wire(message.proposal)
            previous = None if message.previous is None else view_from_wire(message.previous)
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        current = self.view
        if current is None or proposal.proposal_key > current.proposal_key:
            self._commit(proposal, previous)
        if self.view is not None and self.view.proposal_key == proposal.proposal_key:
            self._send(sender, CommitAck(proposal.epoch, proposal.digest), self._step_persist_id())

    def _commit(self, proposal: View, previous: View | None) -> None:
        """Start serving ``proposal``."""
        key = proposal.proposal_key
        change = self.change
        reports: dict[str, HandoffReport] = {}
        snapshots: list[OwnerSnapshot] = []
        if change is not None and change.proposal.proposal_key == key:
            reports = dict(change.reports)
            snapshots = change.snapshots
            if self._transfers_stale(key):
                # Data arrived after the hand-off was computed (late pushes, a
                # straggler's hand-off): send the current state too, before any
                # of it is dropped.
                self._start_transfers(change.proposal)
            self.change = None
        else:
            if change is not None and change.proposal.epoch <= proposal.epoch:
                self._abandon_change()
            self._start_transfers(proposal)
        restored = self._restored_reports.pop(key, None)
        if restored:
            for sender, report in restored.items():
                reports.setdefault(sender, report)
        my_new_shard = (
            None if self.self_address is None else proposal.shard_index_of_node(self.self_address)
        )
        if my_new_shard is not None:
            # Data this node carries from an abandoned change (often this very view,
            # abandoned for a later proposal and then committed after all) is held
            # here as surely as data handed off now: its reports count.
            for name, carried in self.carried_reports.items():
                if carried.scope is not None and shard_within(
                    proposal.ring, my_new_shard, ring_for(carried.scope[0]), carried.scope[1]
                ):
                    reports.setdefault(name, carried)
            # So is the data of shards it left and has not handed over yet
            # (seed 170006: a leaver that became the only member of the next
            # view sent its report to nobody, and covered its own writes short).
            if self.self_address is not None:
                for epoch, departure in self.departures.items():
                    reports.setdefault(f"departed:{self.self_address}:{epoch}", departure)
        for stale_target in [t for t in self._restored_reports if t <= key]:
            # Reports for a change this node was in when it stopped, superseded by
            # this one: the data they describe is handed off with everything else.
            del self._restored_reports[stale_target]
        old_view = self.view
        old_shard = self.shard_index
        if old_view is not None and old_shard is not None and self.self_address is not None:
            departure = HandoffReport(
                old_view.epoch,
                old_view.view_tag,
                old_shard,
                self.incarnation,
                self._relevant_known(),
                len(old_view.shards),
            )
            reports[self.self_address] = departure
            if len(self.store):
                self.departures[old_view.epoch] = departure
                while len(self.departures) > DEPARTURES_MAX:
                    del self.departures[min(self.departures)]
        for transfer_key in [k for k in self.outgoing if k[1] != key]:
            if self.change is None or transfer_key[1] != self.change.proposal.proposal_key:
                del self.outgoing[transfer_key]
        self.ledger = Ledger(key, reports, snapshots)
        self.previous_view = old_view if old_view is not None else previous
        self._reset_replication()
        self.known = {}
        self._set_membership(proposal)
        self._recompute_coverage()

        self._holding_foreign_keys = len(self.store) > 0
        self.counters.view_changes += 1
        self._meta_changed()
        assert self._step is not None
        self._step.output.view_changes.append(proposal.epoch)
        if self.change is not None:
            # The hand-off for the pending (later) change was computed under the
            # view this node just left: its report says nothing of the keys it
            # owns now. Hand off again from this view.
            self._start_transfers(self.change.proposal)
        self._drop_foreign_keys_if_handed_off()
        self._retry_waiters()

    def _recompute_coverage(self) -> None:
        ledger = self.ledger
        if ledger is None:
            return
        coverage = coverage_from_reports(ledger.reports.values())
        changed = False
        for writer, seq in coverage.items():
            if seq > self.known.get(writer, 0):
                self.known[writer] = seq
                changed = True
        if changed:
            # A hand-off computed before carries a report with the old clock: the
            # receivers' coverage would stop short of what this node now holds.
            self.store_generation += 1
            self._meta_changed()
            self._drain_pending()
            self._retry_waiters()

    def _drop_foreign_keys_if_handed_off(self) -> None:
        view = self.view
        if view is None or not self._holding_foreign_keys:
            return
        if any(not t.acked for t in self.outgoing.values()):
            return
        if self.change is not None:
            return
        if self.shard_index is None:
            if len(self.store):
                self.store.clear()
                assert self._step is not None
                self._step.reset = True
                self._step.dirty_keys.clear()
            if self.ledger is not None and self.self_address is not None:
                # The report this node made of the shard it left vouches for data
                # it no longer holds: never send it again (see _own_report_as_leaver).
                self.ledger.reports.pop(self.self_address, None)
                self._meta_changed()
        else:
            foreign = [k for k in self.store if view.shard_index_for_key(k) != self.shard_index]
            for key in foreign:
                self.store.remove(key)
                self._key_changed(key)
        self._holding_foreign_keys = False
        # What this node carried, and the data of shards it left, are with their
        # owners now.
        self.carried_reports.clear()
        self.departures.clear()

    def _on_commit_ack(self, sender: str, message: CommitAck) -> None:
        coordination = self.coordinations.get((message.epoch, message.digest))
        if coordination is not None:
            coordination.acknowledged.add(sender)
            self._advance_coordination(coordination)

    def _on_prepared(self, sender: str, message: Prepared) -> None:
        coordination = self.coordinations.get((message.epoch, message.digest))
        if coordination is not None and coordination.committed_s is None:
            coordination.prepared.add(sender)
            self._advance_coordination(coordination)

    def _on_superseded(self, sender: str, message: Superseded) -> None:
        try:
            winner = view_from_wire(message.winner)
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        self._meet(winner, None, sender)
        if message.winner_committed:
            current = self.view
            if current is None or winner.proposal_key > current.proposal_key:
                self._commit(winner, None)
        coordination = self.coordinations.get((message.epoch, message.digest))
        if (
            coordination is not None
            and coordination.committed_s is None
            and winner.proposal_key != coordination.proposal.proposal_key
            and (
                winner.proposal_key > coordination.proposal.proposal_key
                # A committed view beats every proposal of its epoch or lower, even
                # one with a higher digest: this one can never commit (seed 110108
                # re-sent it forever).
                or (message.winner_committed and winner.epoch >= coordination.proposal.epoch)
            )
        ):
            self._fail_coordination(coordination, winner, message.winner_committed)

    # -- learning newer views --------------------------------------------------------------------------

    def _meet(self, view: View, previous: View | None = None, sender: str | None = None) -> None:
        """Remember the nodes a proposal names while this node serves no view
        (see ``acquaintances``; the members of the view it commits are dropped)."""
        if self.view is not None:
            return
        acquaintances = self.acquaintances
        changed = False
        addresses = list(view.all_addresses())
        if previous is not None:
            addresses.extend(previous.all_addresses())
        if sender is not None:
            addresses.append(sender)
        for address in addresses:
            if address != self.self_address and address not in acquaintances:
                acquaintances[address] = None
                changed = True
                if len(acquaintances) > ACQUAINTANCES_MAX:
                    del acquaintances[next(iter(acquaintances))]
        if changed:
            self._meta_changed()

    def _send_newer_view(self, address: str, force: bool = False) -> None:
        view = self.view
        if view is None or address == self.self_address:
            return
        last = self._newer_view_sent_s.get(address, float("-inf"))
        if not force and self.now_s - last < 1.0:
            return
        self._newer_view_sent_s[address] = self.now_s
        self._send(address, NewerView(view_to_wire(view), _wire_or_none(self.previous_view)))  # type: ignore[arg-type]

    def _on_newer_view(self, sender: str, message: NewerView) -> None:
        try:
            view = view_from_wire(message.view)
            previous = None if message.previous is None else view_from_wire(message.previous)
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        current = self.view
        if current is None or view.proposal_key > current.proposal_key:
            self._commit(view, previous)

    def _on_view_query(self, sender: str, message: ViewQuery) -> None:
        view = self.view
        if view is None:
            if message.epoch > 0:
                self._ask_view(sender)
            return
        theirs = (message.epoch, message.digest)
        if theirs < view.proposal_key:
            self._send_newer_view(sender)
        elif theirs > view.proposal_key:
            self._ask_view(sender)

    def _ask_view(self, address: str) -> None:
        """Ask ``address`` which view it serves (rate-limited per address)."""
        view = self.view
        last = self._newer_view_sent_s.get("?" + address, float("-inf"))
        if self.now_s - last < 1.0:
            return
        self._newer_view_sent_s["?" + address] = self.now_s
        self._send(
            address, ViewQuery(0, b"") if view is None else ViewQuery(view.epoch, view.digest)
        )

    def _view_gossip_tick(self) -> None:
        """Every so often ask one known node which view it serves: nodes holding
        different views (a missed change, or two views committed with one epoch
        during a partition) always end up finding out, even with nothing else to say."""
        if self.now_s - self._last_view_gossip_s < self.settings.view_gossip_interval_s:
            return
        self._last_view_gossip_s = self.now_s
        view = self.view
        if view is None:
            return
        known: set[str] = set()
        for held in (view, self.previous_view):
            if held is not None:
                known.update(held.all_addresses())
        known.discard(self.self_address or "")
        if not known:
            return
        ordered = sorted(known)
        address = ordered[self._gossip_cursor % len(ordered)]
        self._gossip_cursor += 1
        self._send(address, ViewQuery(view.epoch, view.digest))

    def _acquaintance_gossip_tick(self) -> None:
        """Every so often ask one acquaintance which view it serves. A first view
        shares no earlier view with another first view committed at the same time
        over disjoint members (seed 122285): these nodes are the only link left."""
        view = self.view
        if (
            view is None
            or not self.acquaintances
            or self.now_s - self._last_acquaintance_gossip_s
            < self.settings.acquaintance_gossip_interval_s
        ):
            return
        self._last_acquaintance_gossip_s = self.now_s
        ordered = list(self.acquaintances)
        address = ordered[self._acquaintance_cursor % len(ordered)]
        self._acquaintance_cursor += 1
        self._send(address, ViewQuery(view.epoch, view.digest))

    # -- transfers ---------------------------------------------------------------------------------------

    def _on_transfer_chunk(self, sender: str, message: TransferChunk) -> None:
        key: ProposalKey = (message.epoch, message.digest)
        target: View | None = None
        if self.change is not None and self.change.proposal.proposal_key == key:
            target = self.change.proposal
        elif self.view is not None and self.view.proposal_key == key:
            target = self.view
        if target is None:
            if self.view is not None and key < self.view.proposal_key:
                self._send_newer_view(sender)
            return
        if not 0 <= message.chunk_index < message.chunk_count <= 1_000_000:
            self.counters.peer_input_rejected += 1
            return
        staging_key = (sender, key, message.generation)
        staged = self._incoming.get(staging_key)
        if staged is None:
            staged = self._incoming[staging_key] = _StagedTransfer(started_s=self.now_s)
        if message.chunk_index in staged.chunks:
            return
        if self._incoming_versions + len(message.versions) > self.settings.staged_versions_max:
            self._drop_incoming(staging_key)
            return
        staged.chunks[message.chunk_index] = message
        staged.versions += len(message.versions)
        self._incoming_versions += len(message.versions)
        if len(staged.chunks) < message.chunk_count:
            return
        chunks = self._drop_incoming(staging_key)
        assert chunks is not None
        self._apply_transfer(sender, target, [chunks[i] for i in range(message.chunk_count)])

    def _drop_incoming(
        self, staging_key: tuple[str, ProposalKey, int]
    ) -> dict[int, TransferChunk] | None:
        staged = self._incoming.pop(staging_key, None)
        if staged is None:
            return None
        self._incoming_versions -= staged.versions
        return staged.chunks

    def _apply_transfer(self, sender: str, target: View, chunks: list[TransferChunk]) -> None:
        first = chunks[0]
        try:
            report_known = clock_from_pairs(first.known)
            parsed = [version_from_wire(wire) for chunk in chunks for wire in chunk.versions]
        except PeerInputError:
            self.counters.peer_input_rejected += 1
            return
        if self.self_address is None:
            return
        my_shard = target.shard_index_of_node(self.self_address)
        if my_shard is None:
            return
        committed = self.view
        pending = (
            self.change if self.change is not None and self.change.proposal is target else None
        )
        if committed is None or committed.proposal_key != target.proposal_key:
            self._holding_foreign_keys = True
        snapshots = self._snapshots_for(target.proposal_key)
        snapshot = self._owner_snapshot(first)
        for key, version in parsed:
            if target.shard_index_for_key(key) != my_shard:
                self.counters.peer_input_rejected += 1
                continue
            if (
                snapshots
                and not self.store.has_dot(key, version.writer, version.seq)
                and any(earlier.rules_out(key, version) for earlier in snapshots)
            ):
                # A node that owned the key handed it over without this version
                # although its clock covers it: a stale copy (one carried through
                # an abandoned change, say) that must not come back.
                continue
            owned_now = (
                committed is not None and committed.shard_index_for_key(key) == self.shard_index
            )
            if (
                owned_now
                and self.known.get(version.writer, 0) >= version.seq
                and not self.store.has_dot(key, version.writer, version.seq)
            ):
                # This node owns the key and has seen that version superseded (and
                # perhaps collected): a stale copy must never bring it back.
                continue
            outcome = self.store.apply(key, version)
            if outcome.changed:
                self._key_changed(key, affects_handoff=pending is None)
                self.counters.keys_transferred_in += 1
        if snapshot is not None and snapshots is not None:
            snapshots.append(snapshot)
            self._drop_ruled_out(snapshot, parsed, target, my_shard)
        source_view_tag = (
            int.from_bytes(first.source_digest[:2], "big") if first.source_digest else 0
        )
        report = HandoffReport(
            first.source_epoch,
            source_view_tag,
            first.source_shard,
            first.source_incarnation,
            report_known,
            first.source_shard_count,
            first_hand=first.source_shard >= 0,
            complete=first.complete,
        )
        target_key = target.proposal_key
        reports: dict[str, HandoffReport]
        if self.change is not None and self.change.proposal.proposal_key == target_key:
            reports = self.change.reports
        elif self.view is not None and self.view.proposal_key == target_key:
            if self.ledger is None or self.ledger.target != target_key:
                # A restart during a later change persisted that change's reports,
                # not this view's ledger: start it again (coverage only grows).
                self.ledger = Ledger(target_key)
            reports = self.ledger.reports
        else:
            reports = {}
        name = sender
        existing = reports.get(name)
        if existing is not None and (
            existing.source_epoch != report.source_epoch
            or existing.source_shard != report.source_shard
        ):
            # The sender handed over from another view before (it committed a
            # view in between, or returns keys it carried): both reports hold.
            # Replacing the first lost its claim for good (seed 142178: a
            # leaver's first-hand report of its old shard gave way to its later
            # second-hand one, and no replica covered its writes again).
            name = f"{sender}#{report.source_epoch}.{report.source_shard}"
            existing = reports.get(name)
        if existing is not None:
            report = replace(
                report,
                known=merge(existing.known, report.known),
                complete=existing.complete and report.complete,
            )
        reports[name] = report
        for wire_report in first.carried:
            try:
                carried_known = clock_from_pairs(wire_report.known)
            except PeerInputError:
                self.counters.peer_input_rejected += 1
                continue
            name = wire_report.origin
            if name.startswith("departed:"):
                self._take_departure(sender, wire_report, carried_known, first.complete, reports)
                continue
            if not name.startswith("carried:") or len(name) > 300:
                self.counters.peer_input_rejected += 1
                continue
            names = tuple(wire_report.scope_shard_names)
            if not 0 <= wire_report.scope_shard < len(names) or len(names) > SHARDS_PER_VIEW_MAX:
                self.counters.peer_input_rejected += 1
                continue
            scope = (names, wire_report.scope_shard)
            if not shard_within(target.ring, my_shard, ring_for(names), wire_report.scope_shard):
                # It vouches for the keys of another shard: of no use here.
                continue
            previous = reports.get(name)
            if previous is not None:
                carried_known = merge(previous.known, carried_known)
            reports[name] = HandoffReport(
                wire_report.source_epoch,
                wire_report.source_view_tag,
                wire_report.source_shard,
                wire_report.source_incarnation,
                carried_known,
                wire_report.source_shard_count,
                first_hand=False,
                scope=scope,
            )
        if self.view is not None and self.view.proposal_key == target_key:
            self._recompute_coverage()
            self._retry_waiters()
        self._meta_changed()
        self._send(
            sender,
            TransferAck(first.epoch, first.digest, first.generation),
            self._step_persist_id(),
        )

    def _take_departure(
        self,
        sender: str,
        wire_report: WireReport,
        known: Clock,
        complete: bool,
        reports: dict[str, HandoffReport],
    ) -> None:
        """Keep a report the sender made of a shard it left and still holds the
        data of: it is first-hand, like the transfer's own report."""
        if (
            not 0
            <= wire_report.source_shard
            < wire_report.source_shard_count
            <= (SHARDS_PER_VIEW_MAX)
        ):
            self.counters.peer_input_rejected += 1
            return
        name = f"departed:{sender}:{wire_report.source_epoch}"
        previous = reports.get(name)
        if previous is not None:
            known = merge(previous.known, known)
            complete = complete and previous.complete
        reports[name] = HandoffReport(
            wire_report.source_epoch,
            wire_report.source_view_tag,
            wire_report.source_shard,
            wire_report.source_incarnation,
            known,
            wire_report.source_shard_count,
            complete=complete,
        )

    def _snapshots_for(self, target: ProposalKey) -> list[OwnerSnapshot] | None:
        if self.change is not None and self.change.proposal.proposal_key == target:
            return self.change.snapshots
        if self.ledger is not None and self.ledger.target == target:
            return self.ledger.snapshots
        return None

    def _owner_snapshot(self, first: TransferChunk) -> OwnerSnapshot | None:
        """The snapshot a transfer gives, if its sender owned keys and sent them all."""
        names = first.source_shard_names
        if (
            not first.complete
            or not names
            or len(names) > SHARDS_PER_VIEW_MAX
            or not 0 <= first.source_shard < len(names)
            or len(names) != first.source_shard_count
        ):
            return None
        try:
            known = clock_from_pairs(first.known)
            ring = ring_for(names)
        except (PeerInputError, ValueError):
            return None
        return OwnerSnapshot(ring, first.source_shard, known)

    def _drop_ruled_out(
        self,
        snapshot: OwnerSnapshot,
        sent: list[tuple[str, Version]],
        target: View,
        my_shard: int,
    ) -> None:
        """Drop every version this node holds for its keys in ``target`` that
        ``snapshot`` rules out: its sender owned the key, covers the version, and
        did not send it (it saw it superseded, and may have collected the
        tombstone that superseded it). Such versions reach a node second-hand:
        kept for an abandoned change, or passed on by a node that held them."""
        sent_dots: dict[str, set[tuple[bytes, int]]] = {}
        for key, version in sent:
            sent_dots.setdefault(key, set()).add((version.writer, version.seq))
        empty: set[tuple[bytes, int]] = set()
        doomed_by_key: list[tuple[str, list[Version]]] = []
        for key, entry in self.store.items():
            dots = sent_dots.get(key, empty)
            doomed = [
                version
                for version in entry
                if (version.writer, version.seq) not in dots and snapshot.rules_out(key, version)
            ]
            if doomed and target.shard_index_for_key(key) == my_shard:
                doomed_by_key.append((key, doomed))
        for key, doomed in doomed_by_key:
            self.store.discard_versions(key, doomed)
            self._key_changed(key)
            self.counters.stale_versions_dropped += len(doomed)

    def _on_transfer_ack(self, sender: str, message: TransferAck) -> None:
        transfer = self.outgoing.get((sender, (message.epoch, message.digest), message.generation))
        if transfer is None or transfer.acked:
            return
        transfer.acked = True
        key = (message.epoch, message.digest)
        if self.handoff_progress.target == key:
            self.handoff_progress.versions_acked += transfer.versions
            self.handoff_progress.bytes_acked += transfer.value_bytes
            self.handoff_progress.transfers_acked += 1
        change = self.change
        if change is not None and change.proposal.proposal_key == key and self._transfers_done(key):
            if self._transfers_stale(key):
                self._start_transfers(change.proposal)
            else:
                for coordinator in sorted(change.coordinators):
                    self._deliver(coordinator, Prepared(message.epoch, message.digest))
        if self._transfers_done(key):
            for transfer_key in [k for k in self.outgoing if k[1] == key]:
                del self.outgoing[transfer_key]
        self._drop_foreign_keys_if_handed_off()

    # -- timers --------------------------------------------------------------------------------------------

    def _reconfiguration_tick(self) -> None:
        now_s = self.now_s
        self._view_gossip_tick()
        self._acquaintance_gossip_tick()
        for coordination in list(self.coordinations.values()):
            if coordination.proposal.proposal_key in self.coordinations:
                self._advance_coordination(coordination)
        for transfer in self.outgoing.values():
            if (
                not transfer.acked
                and now_s - transfer.last_sent_s >= self.settings.transfer_retry_s
            ):
                transfer.last_sent_s = now_s
                after_persist = self._transfer_after_persist(transfer)
                for chunk in transfer.chunks:
                    self._send(transfer.destination, chunk, after_persist)
        change = self.change
        view = self.view
        if (
            change is None
            and self._holding_foreign_keys
            and view is not None
            and not self.outgoing
            and not any(target > view.proposal_key for target in self._restored_reports)
        ):
            # Keys this node holds without owning them, and no hand-off under way:
            # a restart forgot the return of data received for an abandoned change.
            # Return them to their owners, then drop them. (Not while this node may
            # still be in a change it stopped in: that data is the new owners'.)
            self._start_transfers(view)
            self._drop_foreign_keys_if_handed_off()
        if (
            change is not None
            and now_s - change.started_s >= self.settings.change_takeover_s
            and change.proposal.proposal_key not in self.coordinations
        ):
            self._coordination_for(change.proposal, change.previous)
        horizon = now_s - 120.0
        for staging_key in [k for k, s in self._incoming.items() if s.started_s < horizon]:
            self._drop_incoming(staging_key)

    def _reset_node(self) -> None:
        """Forget view and data (SyncKV ``DELETE /kvs/admin/view``)."""
        for coordination in self.coordinations.values():
            for request_id, _ in coordination.waiting:
                self._complete(request_id, OperationResult(ResultKind.NO_VIEW))
        self.coordinations.clear()
        self.change = None
        self.outgoing.clear()
        self._incoming.clear()
        self._incoming_versions = 0
        self.ledger = None
        self._holding_foreign_keys = False
        self.departures.clear()
        self.store.clear()
        self.known = {}
        self.previous_view = None
        self.acquaintances.clear()
        self._reset_replication()
        self._set_membership(None)
        assert self._step is not None
        self._step.reset = True
        self._step.dirty_keys.clear()
        self._meta_changed()
        self._retry_waiters()

    def winner_value(self, key: str) -> str | None:
        """The visible value of a key on this replica (for inspection and tests)."""
        entry = self.store.entry(key)
        return None if entry is None else winner_of(entry).value


def _report_to_wire(name: str, report: HandoffReport) -> WireReport:
    scope_names, scope_shard = report.scope if report.scope is not None else ((), -1)
    return WireReport(
        name,
        report.source_epoch,
        report.source_view_tag,
        report.source_shard,
        report.source_shard_count,
        report.source_incarnation,
        pairs_from_clock(report.known),
        list(scope_names),
        scope_shard,
    )


def _scope_label(scope: tuple[tuple[str, ...], int]) -> str:
    names, shard = scope
    digest = hashlib.blake2b("\x00".join(names).encode(), digest_size=6).hexdigest()
    return f"{digest}.{shard}"
