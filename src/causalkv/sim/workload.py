"""Simulated clients and the history they record.

Each client is one *process* of the history: one session token, one
operation at a time. It picks an operation (get, put, delete, list), a key of
the run's key space (which spans the shards) and a node (it sticks to a node
for a while, then moves to a random one, members or not), records the
invocation, sends the request and records the outcome with the virtual time:

=====================  ==========================================================
answer                 history
=====================  ==========================================================
OK / NOT_FOUND         ``ok`` (get: the value or null; list: the items, with
                       ``covers``: the workload keys the answering node's shard
                       owned); a delete that found nothing is ``fail``
DEPENDENCY_TIMEOUT,    ``fail`` for reads; ``info`` for writes (it may have been
OUTCOME_UNKNOWN        applied by the replica a forward reached)
NO_VIEW, NOT_MEMBER,   ``fail``
OVERLOADED, VIEW_*
refused connection     ``fail`` (the request never reached a node)
reset / client timeout ``info`` (unknown outcome)
=====================  ==========================================================

Each put writes a value unique to the run (``"p3-17"``: process 3, its 17th
put), so a read names the write it returned. The token of every ok or
not-found answer replaces the client's token, as a well-behaved HTTP client
does with ``causal-metadata``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from causalkv.check import HistoryRecorder, Invocation
from causalkv.check.format import Function
from causalkv.core.requests import Operation, ResultKind
from causalkv.core.token import Token, encode_token_bytes
from causalkv.sim.invariants import Invariants
from causalkv.sim.loop import EventLoop
from causalkv.sim.network import Network, NotDelivered, PeerUnavailable
from causalkv.sim.node import ClientReply, SimNode
from causalkv.sim.trace import Trace

FRESH_TOKEN = encode_token_bytes(Token())

_OPERATIONS: dict[str, Operation] = {
    "get": Operation.GET,
    "put": Operation.PUT,
    "delete": Operation.DELETE,
    "list": Operation.LIST,
}

_UNEXPECTED = frozenset({ResultKind.FORWARD, ResultKind.WRONG_SHARD, ResultKind.BAD_REQUEST})


@dataclass
class WorkloadProfile:
    clients: int = 3
    keys: int = 8
    weights: tuple[float, float, float, float] = (0.35, 0.35, 0.1, 0.2)
    """Relative frequency of get, put, delete, list."""
    think_min_s: float = 0.0
    think_max_s: float = 0.1
    client_timeout_s: float = 10.0
    stickiness: float = 0.8
    """Chance that the next operation goes to the same node as the last one."""

    def describe(self) -> str:
        get, put, delete, listing = self.weights
        return (
            f"{self.clients} clients, {self.keys} keys, mix g{get:.2f}/p{put:.2f}/d{delete:.2f}"
            f"/l{listing:.2f}, think {self.think_min_s * 1e3:.0f}-{self.think_max_s * 1e3:.0f}ms,"
            f" timeout {self.client_timeout_s:.0f}s"
        )


def key_space(count: int) -> list[str]:
    return [f"k{index}" for index in range(count)]


@dataclass
class ClientStatistics:
    invoked: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0


class Client:
    def __init__(
        self,
        name: str,
        *,
        loop: EventLoop,
        rng: random.Random,
        network: Network,
        nodes: Sequence[SimNode],
        recorder: HistoryRecorder,
        profile: WorkloadProfile,
        keyspace: Sequence[str],
        trace: Trace,
        invariants: Invariants,
        statistics: ClientStatistics,
    ) -> None:
        self.name = name
        self.loop = loop
        self.rng = rng
        self.network = network
        self.nodes = list(nodes)
        self.recorder = recorder
        self.profile = profile
        self.keyspace = list(keyspace)
        self.trace = trace
        self.invariants = invariants
        self.statistics = statistics
        self.token = FRESH_TOKEN
        self.puts = 0
        self.node = rng.choice(self.nodes)
        self.busy = False
        self.move = False
        """Pick another node next time (the last one refused or could not serve)."""

    async def run(self, until_s: float, stopping: Callable[[], bool]) -> None:
        rng = self.rng
        profile = self.profile
        while self.loop.now < until_s and not stopping():
            await self.operation()
            think = profile.think_min_s + (profile.think_max_s - profile.think_min_s) * rng.random()
            await self.loop.sleep(think)

    async def operation(self) -> None:
        rng = self.rng
        f: Function = rng.choices(("get", "put", "delete", "list"), self.profile.weights)[0]
        if self.move or rng.random() >= self.profile.stickiness:
            self.node = rng.choice(self.nodes)
        self.move = False
        node = self.node
        key = None if f == "list" else rng.choice(self.keyspace)
        value: str | None = None
        if f == "put":
            self.puts += 1
            value = f"{self.name}-{self.puts}"
        self.busy = True
        invocation = self.recorder.invoke(
            self.name, f, key, value, node.address, time_s=self.loop.now
        )
        self.statistics.invoked += 1
        what = f"{f} {key}" if key is not None else f
        if value is not None:
            what += f"={value}"
        self.trace.record(self.name, f"invoke {what} @ {node.address}")
        operation = _OPERATIONS[f]
        token = self.token
        try:
            reply = await self.network.call(
                None,
                node.address,
                self.profile.client_timeout_s,
                lambda: node.serve_client(operation, key, token, value),
            )
        except NotDelivered:
            self._complete("fail", f"{what}: refused")
            self.recorder.fail(invocation, time_s=self.loop.now)
            return
        except PeerUnavailable as error:
            self._complete("info", f"{what}: {error}")
            self.recorder.info(invocation, time_s=self.loop.now)
            return
        finally:
            self.busy = False
        self._record(f, what, invocation, reply)

    async def session_reads(
        self, nodes: Sequence[SimNode], timeout_s: float, attempts: int = 1
    ) -> str | None:
        """After healing: list every node with this session's token. Every one
        must succeed (the cluster healed, so every dependency is available);
        returns what went wrong, or None. A list that times out is tried again,
        up to ``attempts`` times: profiles that slow some messages 200-fold take
        up to 32 s one way (seed 152276), which no timeout should have to cover."""
        for node in nodes:
            for attempt in range(1, attempts + 1):
                self.busy = True
                invocation = self.recorder.invoke(
                    self.name, "list", None, None, node.address, time_s=self.loop.now
                )
                self.trace.record(self.name, f"invoke session list @ {node.address}")
                token = self.token
                try:
                    reply = await self.network.call(
                        None,
                        node.address,
                        timeout_s,
                        lambda node=node, token=token: node.serve_client(  # type: ignore[misc]
                            Operation.LIST, None, token, None
                        ),
                    )
                except PeerUnavailable as error:
                    self.recorder.info(invocation, time_s=self.loop.now)
                    if attempt < attempts:
                        continue
                    return f"session list of {self.name} on {node.address} failed: {error}"
                finally:
                    self.busy = False
                break
            self._record("list", "session list", invocation, reply)
            if reply.kind is not ResultKind.OK:
                return (
                    f"after healing, the session of {self.name} cannot list {node.address}:"
                    f" {reply.kind.value}"
                )
        return None

    def _complete(self, outcome: str, detail: str) -> None:
        if outcome != "ok":
            self.move = True
        self.trace.record(self.name, f"{outcome} {detail}")
        if outcome == "ok":
            self.statistics.ok += 1
        elif outcome == "fail":
            self.statistics.fail += 1
        else:
            self.statistics.info += 1

    def _record(self, f: Function, what: str, invocation: Invocation, reply: ClientReply) -> None:
        kind = reply.kind
        now = self.loop.now
        recorder = self.recorder
        if kind in _UNEXPECTED:
            self.invariants.violated(f"client {self.name} got {kind.value} for {what}")
            return
        if kind in (ResultKind.OK, ResultKind.NOT_FOUND) and reply.token is not None:
            self.token = reply.token
        if f == "get":
            if kind is ResultKind.OK:
                self._complete("ok", f"{what} -> {reply.value!r}")
                recorder.ok(invocation, reply.value, time_s=now)
            elif kind is ResultKind.NOT_FOUND:
                self._complete("ok", f"{what} -> not found")
                recorder.ok(invocation, None, time_s=now)
            else:
                self._complete("fail", f"{what}: {kind.value}")
                recorder.fail(invocation, time_s=now)
        elif f == "list":
            if kind is ResultKind.OK:
                items = dict(reply.items or {})
                self._complete("ok", f"{what} -> {len(items)} items")
                recorder.ok(invocation, items, covers=reply.covers or (), time_s=now)
            else:
                self._complete("fail", f"{what}: {kind.value}")
                recorder.fail(invocation, time_s=now)
        elif kind is ResultKind.OK:
            self._complete("ok", what)
            recorder.ok(invocation, time_s=now)
        elif kind in (ResultKind.DEPENDENCY_TIMEOUT, ResultKind.OUTCOME_UNKNOWN):
            self._complete("info", f"{what}: {kind.value}")
            recorder.info(invocation, time_s=now)
        else:
            self._complete("fail", f"{what}: {kind.value}")
            recorder.fail(invocation, time_s=now)


async def final_list(
    *,
    loop: EventLoop,
    network: Network,
    recorder: HistoryRecorder,
    node: SimNode,
    shard: str,
    covers: Sequence[str],
    trace: Trace,
    timeout_s: float,
    attempts: int = 1,
) -> str | None:
    """The final listing of ``node`` (fresh session); returns an error, or None if
    ok. A list that times out is tried again, up to ``attempts`` times: on a
    network whose messages are sometimes slowed 200-fold, one reply in a few
    hundred takes longer than any fixed timeout, healed or not."""
    process = f"final-{node.address}"
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            # A process whose operation ended "info" is not reused (as in Jepsen).
            process = f"final-{node.address}#{attempt}"
        invocation = recorder.invoke(process, "list", None, None, node.address, time_s=loop.now)
        try:
            reply = await network.call(
                None,
                node.address,
                timeout_s,
                lambda: node.serve_client(Operation.LIST, None, FRESH_TOKEN, None),
            )
            break
        except PeerUnavailable as error:
            recorder.info(invocation, time_s=loop.now)
            if attempt == attempts:
                return f"final list on {node.address} failed {attempts} times: {error}"
            trace.record(process, f"final list timed out ({error}); trying again")
    if reply.kind is not ResultKind.OK:
        recorder.fail(invocation, time_s=loop.now)
        return f"final list on {node.address} answered {reply.kind.value}"
    items = dict(reply.items or {})
    recorder.ok(invocation, items, final=True, covers=covers, shard=shard, time_s=loop.now)
    trace.record(process, f"final list ({shard}) -> {len(items)} items")
    return None
