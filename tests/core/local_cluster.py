"""A synchronous in-memory cluster for core unit tests.

Messages are delivered in FIFO order, persist batches are durable at once, and
forwarding is done inline. Only for tests of protocol logic; the simulator
(`causalkv.sim`) is the faithful, fault-injecting driver.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from causalkv.core.base import ReplicaSettings
from causalkv.core.effects import Output
from causalkv.core.messages import Envelope, PeerMessage
from causalkv.core.replica import Replica
from causalkv.core.requests import ClientRequest, Operation, OperationResult, ResultKind
from causalkv.core.token import Token
from causalkv.core.view import View, parse_sharded_view


@dataclass
class LocalCluster:
    addresses: list[str]
    settings: ReplicaSettings = field(default_factory=ReplicaSettings)
    now_s: float = 0.0
    blocked: set[tuple[str, str]] = field(default_factory=set)
    dropping: Callable[[str, str, PeerMessage], bool] | None = None
    """Drops the messages (sender, destination, message) it returns True for."""

    def __post_init__(self) -> None:
        self.replicas = {
            address: Replica(self.settings, index.to_bytes(6, "big"))
            for index, address in enumerate(self.addresses, start=1)
        }
        self.queue: deque[tuple[str, str, PeerMessage]] = deque()
        self.results: dict[int, OperationResult] = {}
        self._request_ids = itertools.count(1)

    def _carry(self, address: str, output: Output) -> None:
        replica = self.replicas[address]
        for batch in output.persist:
            replica.mark_durable(batch.persist_id)
        for outgoing in output.messages:
            self.queue.append((address, outgoing.destination, outgoing.message))
        for completed in output.results:
            self.results[completed.request_id] = completed.result

    def pump(self, limit: int = 100_000) -> None:
        steps = 0
        while self.queue and steps < limit:
            steps += 1
            sender, destination, message = self.queue.popleft()
            if (sender, destination) in self.blocked or destination not in self.replicas:
                continue
            if self.dropping is not None and self.dropping(sender, destination, message):
                continue
            envelope = Envelope(sender, destination, self._epoch(sender), [message])
            self._carry(destination, self.replicas[destination].receive(self.now_s, envelope))

    def _epoch(self, address: str) -> int:
        view = self.replicas[address].view
        return 0 if view is None else view.epoch

    def tick(self, seconds: float = 0.1, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now_s += seconds
            for address, replica in self.replicas.items():
                self._carry(address, replica.tick(self.now_s))
            self.pump()

    def propose(self, view_json: object, via: str) -> int:
        """Send ``PUT /view`` to ``via`` and deliver what follows, without waiting
        for the change to complete; returns the request id."""
        view = parse_sharded_view(view_json)
        request_id = next(self._request_ids)
        self._carry(via, self.replicas[via].propose_view(self.now_s, request_id, view, via))
        self.pump()
        return request_id

    def install(self, view_json: object, via: str | None = None) -> OperationResult:
        request_id = self.propose(view_json, via or self.addresses[0])
        for _ in range(200):
            if request_id in self.results:
                break
            self.tick()
        return self.results.pop(request_id)

    def request(
        self,
        address: str,
        operation: Operation,
        key: str | None,
        token: Token,
        value: str | None = None,
        settle: bool = True,
    ) -> OperationResult | int:
        request_id = next(self._request_ids)
        request = ClientRequest(request_id, operation, key, token, value)
        self._carry(address, self.replicas[address].submit(self.now_s, request))
        self.pump()
        result = self.results.pop(request_id, None)
        if result is not None and result.kind is ResultKind.FORWARD and settle:
            target = result.forward_to[0]
            forwarded = ClientRequest(request_id, operation, key, token, value, forwarded=True)
            self._carry(target, self.replicas[target].submit(self.now_s, forwarded))
            self.pump()
            result = self.results.pop(request_id, None)
        if result is None:
            return request_id
        return result

    def put(
        self, address: str, key: str, value: str, token: Token | None = None
    ) -> OperationResult:
        result = self.request(address, Operation.PUT, key, token or Token(), value)
        assert isinstance(result, OperationResult), "request did not complete"
        return result

    def get(self, address: str, key: str, token: Token | None = None) -> OperationResult:
        result = self.request(address, Operation.GET, key, token or Token())
        assert isinstance(result, OperationResult), "request did not complete"
        return result


def sharded_view(shards: dict[str, list[str]]) -> dict[str, list[dict[str, object]]]:
    ids = itertools.count(1)
    return {
        name: [{"address": a, "id": next(ids)} for a in members] for name, members in shards.items()
    }


def view_of(cluster: LocalCluster, address: str) -> View | None:
    return cluster.replicas[address].view
