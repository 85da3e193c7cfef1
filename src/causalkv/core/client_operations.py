"""Client operations: routing, causal waits, and get/put/delete/list.

A request for a key of another shard is answered with ``FORWARD`` and the
runtime relays it. A request whose causal token mentions versions this replica
has not applied yet waits (the replica pulls the missing versions from its
peers meanwhile) until they arrive or ``causal_wait_s`` passes. Writes also
wait while a view change is in progress, so the hand-off never misses them.
"""

from __future__ import annotations

from causalkv.core.base import ReplicaBase, Scope, TokenStatus, Waiter
from causalkv.core.clock import Clock
from causalkv.core.keystore import Version, winner_of
from causalkv.core.messages import Push, ViewQuery
from causalkv.core.requests import (
    ClientRequest,
    Operation,
    OperationResult,
    ResultKind,
    Sibling,
)
from causalkv.core.wire import version_to_wire
from causalkv.core.writer import describe_writer


class ClientOperationsMixin(ReplicaBase):
    _last_pull_s: float = float("-inf")
    _last_view_query_s: float = float("-inf")

    def _handle_request(self, request: ClientRequest) -> None:
        if self._try_execute(request):
            return
        if len(self.waiters) >= self.settings.waiting_requests_max:
            self._complete(
                request.request_id,
                OperationResult(ResultKind.OVERLOADED, detail="too many requests are waiting"),
            )
            return
        self.counters.causal_waits += 1
        self.waiters.append(Waiter(request, self.now_s + self.settings.causal_wait_s))

    def _try_execute(self, request: ClientRequest) -> bool:
        """Answer the request now if possible; False means it must wait."""
        view = self.view
        if view is None:
            if self._change_pending():
                return False
            self._complete(request.request_id, OperationResult(ResultKind.NO_VIEW))
            return True
        if self.shard_index is None:
            pending = self._pending_view()
            if pending is not None and self.self_address and pending.contains(self.self_address):
                return False
            self._complete(request.request_id, OperationResult(ResultKind.NOT_MEMBER))
            return True
        if request.operation is not Operation.LIST:
            assert request.key is not None
            owner = view.shard_index_for_key(request.key)
            if owner != self.shard_index:
                if request.forwarded:
                    if self._change_pending():
                        return False
                    self._complete(request.request_id, OperationResult(ResultKind.WRONG_SHARD))
                else:
                    self._complete(
                        request.request_id,
                        OperationResult(ResultKind.FORWARD, forward_to=view.replicas(owner)),
                    )
                return True
        status = self._token_status(request.token)
        if status is TokenStatus.NEEDS_NEWER_VIEW:
            self._query_newer_view()
            return False
        if status is TokenStatus.UNMET:
            self._pull_missing()
            return False
        operation = request.operation
        if operation is Operation.GET:
            self._execute_get(request)
        elif operation is Operation.LIST:
            if not self._execute_list(request):
                self._pull_missing()
                return False
        else:
            if self._change_pending():
                return False
            self._execute_write(request)
        return True

    def _execute_get(self, request: ClientRequest) -> None:
        assert request.key is not None
        token = request.token.copy()
        entry = self.store.entry(request.key)
        if entry is None:
            self._complete(request.request_id, OperationResult(ResultKind.NOT_FOUND, token=token))
            return
        winner = winner_of(entry)
        token.absorb(winner.clock())
        siblings = []
        if request.with_siblings:
            siblings = [
                Sibling(v.value, describe_writer(v.writer), v.lamport)
                for v in sorted(entry, key=Version.order_key, reverse=True)
            ]
        kind = ResultKind.NOT_FOUND if winner.is_tombstone else ResultKind.OK
        result = OperationResult(kind, token=token, value=winner.value, siblings=siblings)
        self._complete(request.request_id, result, self._after_persist_for(token))

    def _execute_write(self, request: ClientRequest) -> None:
        assert request.key is not None
        writer = self.writer
        view = self.view
        assert writer is not None and view is not None
        key = request.key
        entry = self.store.entry(key)
        token = request.token.copy()
        winner = None if entry is None else winner_of(entry)
        created = winner is None or winner.is_tombstone
        if request.operation is Operation.DELETE and created:
            if winner is not None:
                token.absorb(winner.clock())
            self._complete(
                request.request_id,
                OperationResult(ResultKind.NOT_FOUND, token=token),
                self._after_persist_for(token),
            )
            return
        seq = self.writer_seq + 1
        deps = dict(request.token.clock)
        if entry is not None:
            # The write supersedes what this replica holds for the key, and so
            # everything those versions followed: clocks stay transitively closed.
            for sibling in entry:
                for dep_writer, dep_seq in sibling.dep_items():
                    if deps.get(dep_writer, 0) < dep_seq:
                        deps[dep_writer] = dep_seq
                if deps.get(sibling.writer, 0) < sibling.seq:
                    deps[sibling.writer] = sibling.seq
        deps.pop(writer, None)
        value = request.value if request.operation is Operation.PUT else None
        version = Version(writer, seq, self.store.lamport + 1, deps, value)
        outcome = self.store.apply(key, version)
        assert outcome.changed, "a fresh version always changes its key"
        self.writer_seq = seq
        self.known[writer] = seq
        self.counters.writes_accepted += 1
        self._key_changed(key)
        self._meta_changed()
        persist_id = self._step_persist_id()
        if self.shard_peers():
            push = Push(view.epoch, [version_to_wire(key, version)])
            for peer in self.shard_peers():
                self._send(peer, push, persist_id)
        token.absorb({writer: seq})
        result = OperationResult(ResultKind.OK, token=token, created=created)
        self._complete(request.request_id, result, persist_id)

    def _execute_list(self, request: ClientRequest) -> bool:
        """Answer a listing, or return False (it waits) when it would not be a
        causal cut: a version shown that depends on a write of this view's shard
        (its writer's earlier writes included) not applied here yet. Pushes
        apply versions only once their dependencies are in, but a hand-off delta
        from a co-replica lands at once (seed 50889: k9=p3-188 listed with
        k4=p3-182, though p3-188 followed p3-187). Writers of earlier views are
        not waited for: their versions arrive by hand-off, whole, and this
        replica's clock for them is a lower bound that may never be exact."""
        view = self.view
        assert view is not None
        token = request.token.copy()
        items: dict[str, str] = {}
        check_owner = self._may_hold_foreign_keys()
        known = self.known
        for key, entry in self.store.items():
            if check_owner and view.shard_index_for_key(key) != self.shard_index:
                continue
            winner = winner_of(entry)
            if not self._local_dependencies_applied(winner, known):
                return False
            token.absorb(winner.clock())
            if winner.value is not None:
                items[key] = winner.value
        result = OperationResult(ResultKind.OK, token=token, items=items)
        self._complete(request.request_id, result, self._after_persist_for(token))
        return True

    def _local_dependencies_applied(self, version: Version, known: Clock) -> bool:
        writer = version.writer
        if known.get(writer, 0) < version.seq - 1 and self._scope(writer) is Scope.LOCAL:
            return False
        for dependency, seq in version.dep_items():
            if known.get(dependency, 0) < seq and self._scope(dependency) is Scope.LOCAL:
                return False
        return True

    # -- waiting ---------------------------------------------------------------------------------

    def _retry_waiters(self) -> None:
        if not self.waiters:
            return
        waiting = self.waiters
        self.waiters = []
        for waiter in waiting:
            if not self._try_execute(waiter.request):
                self.waiters.append(waiter)

    def _expire_waiters(self) -> None:
        if not self.waiters:
            return
        now_s = self.now_s
        still: list[Waiter] = []
        for waiter in self.waiters:
            if waiter.deadline_s <= now_s:
                self.counters.causal_wait_timeouts += 1
                self._complete(
                    waiter.request.request_id, OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
                )
            else:
                still.append(waiter)
        self.waiters = still

    def _pull_missing(self) -> None:
        """Ask every peer of the shard for what it has that this replica lacks."""
        if self.now_s - self._last_pull_s < self.settings.pull_interval_s:
            return
        self._last_pull_s = self.now_s
        self._request_sync_from(self.shard_peers())

    def _query_newer_view(self) -> None:
        if self.now_s - self._last_view_query_s < self.settings.view_query_interval_s:
            return
        self._last_view_query_s = self.now_s
        view = self.view
        query = ViewQuery(0, b"") if view is None else ViewQuery(view.epoch, view.digest)
        targets: set[str] = set()
        for known_view in (view, self.previous_view):
            if known_view is not None:
                targets.update(known_view.all_addresses())
        for address in sorted(targets):
            self._send(address, query)
