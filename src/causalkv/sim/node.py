"""The simulated runtime around one replica: ``causalkv.runtime.node`` on virtual
time, a simulated disk and the simulated network.

Everything here mirrors ``NodeRuntime`` (``execute``, ``_forward``, ``_carry``,
``_on_durable``, ``_receive_envelope``, ``_serve_forward``) and
``PeerTransport`` (one envelope in flight per destination, batching what
queued meanwhile, dropping a failed batch, backing off, tracking per-peer
health) as closely as possible: when the simulator finds a bug, it must be a
bug of the real node, not of a look-alike. Peer traffic is encoded and decoded
with the real wire format (``causalkv.runtime.peer_protocol``), and client
tokens with the real token encoding.

Deliberate additions, which change nothing for the replica: the list scope
(which keys a listing vouches for, for the history's ``covers``), per-node
clock offset and drift, and the trace.

A node *incarnation* is one process: ``start`` restores the replica from the
disk (``Replica.restore``) or creates a fresh one, ``crash`` kills the process
(every task, every held message and reply, every queued envelope) and loses
what the disk had not made durable, ``stop`` is a graceful shutdown that first
commits everything queued.
"""

from __future__ import annotations

import random
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from causalkv.core.base import ReplicaSettings
from causalkv.core.effects import Output, PersistBatch
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
    TransferAck,
    TransferChunk,
)
from causalkv.core.replica import Replica
from causalkv.core.requests import ClientRequest, Operation, OperationResult, ResultKind
from causalkv.core.token import Token, TokenError, decode_token_bytes, encode_token_bytes
from causalkv.core.view import View
from causalkv.core.wire import PeerInputError, validate_key
from causalkv.runtime.peer_protocol import (
    OPERATIONS,
    EnvelopeCall,
    ForwardCall,
    call_decoder,
    encoder,
    reply_decoder,
    reply_from_result,
    result_from_reply,
)
from causalkv.sim.disk import DiskProfile, SimDisk
from causalkv.sim.invariants import Invariants
from causalkv.sim.loop import EventLoop, Process, SimFuture, Task
from causalkv.sim.network import Network, NotDelivered, PeerUnavailable
from causalkv.sim.trace import Trace

ADDRESS_CHARS_MAX = 261
TICK_INTERVAL_S = 0.02
PEER_SEND_TIMEOUT_S = 10.0


class NodeFailed(RuntimeError):
    """The core raised; the node stopped serving (fail-stop)."""


class NodeDown(RuntimeError):
    """The node is not running."""


@dataclass(slots=True)
class Answer:
    """What ``execute`` returns: the result, and for a listing the keys it vouches for."""

    result: OperationResult
    covers: tuple[str, ...] | None = None


@dataclass(slots=True)
class ClientReply:
    """What the HTTP API would send back to a client, in dialect-neutral form."""

    kind: ResultKind
    value: str | None
    items: dict[str, str] | None
    token: bytes | None
    """The causal metadata of the reply (only sent with ok and not-found answers)."""
    covers: tuple[str, ...] | None


@dataclass(slots=True)
class PeerHealth:
    """Mirror of ``causalkv.runtime.transport.PeerHealth`` (the fields forwarding uses)."""

    last_success_s: float = 0.0
    last_failure_s: float = 0.0
    consecutive_failures: int = 0
    envelopes_sent: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0


class _WireEnvelope(msgspec.Struct):
    """Mirror of the transport's outgoing envelope: messages encoded when queued."""

    sender: str
    destination: str
    epoch: int
    messages: list[msgspec.Raw]


class _WireEnvelopeCall(msgspec.Struct, tag="envelope"):
    envelope: _WireEnvelope


@dataclass
class _Channel:
    queue: deque[bytes] = field(default_factory=deque)
    busy: bool = False


def describe_message(message: PeerMessage) -> str:
    name = type(message).__name__
    if isinstance(message, Push | SyncDelta):
        return f"{name}({len(message.versions)})"
    if isinstance(message, TransferChunk):
        return f"{name}(e{message.epoch}.{message.digest[:2].hex()}#{message.generation},{len(message.versions)})"
    if isinstance(message, Prepare | Commit | NewerView):
        view = message.view if isinstance(message, NewerView) else message.proposal
        return f"{name}(e{view.epoch})"
    if isinstance(message, Superseded):
        return (
            f"{name}(e{message.epoch}<e{message.winner.epoch}"
            f"{'c' if message.winner_committed else ''})"
        )
    if isinstance(message, Prepared | CommitAck | TransferAck):
        return f"{name}(e{message.epoch})"
    return name


class SimTransport:
    """Mirror of ``PeerTransport`` for one node incarnation."""

    def __init__(self, node: SimNode, process: Process) -> None:
        self._node = node
        self._process = process
        self._channels: dict[str, _Channel] = {}
        self.health: dict[str, PeerHealth] = {}
        self.closed = False

    def send(self, destination: str, message: PeerMessage) -> None:
        if self.closed:
            return
        encoded = encoder.encode(message)
        channel = self._channels.get(destination)
        if channel is None:
            channel = self._channels[destination] = _Channel()
        channel.queue.append(encoded)
        if not channel.busy:
            channel.busy = True
            self._process.spawn(self._drain(destination, channel), f"send->{destination}")

    def _health(self, destination: str) -> PeerHealth:
        health = self.health.get(destination)
        if health is None:
            health = self.health[destination] = PeerHealth()
        return health

    async def _drain(self, destination: str, channel: _Channel) -> None:
        node = self._node
        backoff_s = 0.05
        try:
            while channel.queue and not self.closed:
                batch = [msgspec.Raw(encoded) for encoded in channel.queue]
                channel.queue.clear()
                call = _WireEnvelopeCall(
                    _WireEnvelope(node.self_address(), destination, node.epoch(), batch)
                )
                body = encoder.encode(call)
                health = self._health(destination)
                try:
                    await node.network.post_envelope(
                        node.address,
                        destination,
                        body,
                        PEER_SEND_TIMEOUT_S,
                        f"{len(batch)} messages",
                    )
                except PeerUnavailable:
                    health.last_failure_s = node.now()
                    health.consecutive_failures += 1
                    health.messages_dropped += len(batch)
                    await node.loop.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 1.0)
                    continue
                backoff_s = 0.05
                health.last_success_s = node.now()
                health.consecutive_failures = 0
                health.envelopes_sent += 1
                health.messages_sent += len(batch)
        finally:
            channel.busy = False


@dataclass
class NodeStatistics:
    forwarded_requests: int = 0
    forward_failures: int = 0
    peer_calls_rejected: int = 0
    steps: int = 0


class SimNode:
    """One node of the simulated cluster, across its incarnations."""

    def __init__(
        self,
        address: str,
        node_id: str,
        *,
        loop: EventLoop,
        rng: random.Random,
        network: Network,
        trace: Trace,
        settings: ReplicaSettings,
        disk_profile: DiskProfile,
        keyspace: Sequence[str],
        invariants: Invariants,
        replica_class: type[Replica] = Replica,
        on_core_failure: Callable[[SimNode, str], None],
    ) -> None:
        self.address = address
        self.node_id = node_id
        self.loop = loop
        self.rng = rng
        self.network = network
        self.trace = trace
        self.settings = settings
        self.keyspace = tuple(keyspace)
        self.invariants = invariants
        self.replica_class = replica_class
        self._on_core_failure = on_core_failure
        self.disk = SimDisk(loop, random.Random(rng.getrandbits(64)), disk_profile)
        self.clock_offset_s = rng.uniform(0.0, 10_000.0)
        self.clock_rate = 1.0 + rng.uniform(-0.001, 0.001)
        self.statistics = NodeStatistics()
        self.alive = False
        self.generation = 0
        self.failure: str | None = None
        self.incarnations = 0
        self._replica: Replica | None = None
        self._process: Process | None = None
        self._transport: SimTransport | None = None
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._futures: dict[int, SimFuture[OperationResult]] = {}
        self._next_request_id = 1
        self._durable_id = 0
        self._held: dict[int, list[Callable[[], None]]] = {}
        self._forward_cursor = 0
        self._list_scopes: dict[int, tuple[str, ...]] = {}
        self.active_requests = 0
        """Client operations (local or forwarded here) not answered yet."""

    # -- accessors ---------------------------------------------------------------------------------

    @property
    def replica(self) -> Replica:
        if self._replica is None:
            raise NodeDown(f"{self.address} is down")
        return self._replica

    @property
    def process(self) -> Process:
        if self._process is None:
            raise NodeDown(f"{self.address} is down")
        return self._process

    @property
    def transport(self) -> SimTransport:
        if self._transport is None:
            raise NodeDown(f"{self.address} is down")
        return self._transport

    def now(self) -> float:
        """This node's monotonic clock (offset and slightly drifting)."""
        return self.clock_offset_s + self.loop.now * self.clock_rate

    def epoch(self) -> int:
        replica = self._replica
        view = None if replica is None else replica.view
        return 0 if view is None else view.epoch

    def self_address(self) -> str:
        replica = self._replica
        return (None if replica is None else replica.self_address) or ""

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start a new incarnation from what the disk holds."""
        assert not self.alive
        self.generation += 1
        self.incarnations += 1
        self._reset_process_state()
        process = Process(self.loop, f"{self.address}#{self.generation}")
        process.on_task_error = self._task_error
        self._process = process
        meta, entries = self.disk.load()
        try:
            if meta is None:
                replica = self.replica_class(self.settings, self.rng.randbytes(6))
                replica.self_address = self.address
            else:
                replica = self.replica_class.restore(self.settings, meta, entries)
                if replica.self_address is None:
                    replica.self_address = self.address
        except Exception:
            self._fail(traceback.format_exc())
            return
        self._replica = replica
        self._transport = SimTransport(self, process)
        self.alive = True
        self.disk.attach(self._on_durable)
        self.disk.on_commit_durable = self._committed
        self.trace.record(
            self.address,
            f"start #{self.generation} ({'restored' if meta is not None else 'fresh'},"
            f" epoch {self.epoch()}, {len(replica.store)} keys)",
        )
        generation = self.generation
        self.loop.call_later(self.rng.random() * TICK_INTERVAL_S, lambda: self._tick(generation))

    def _teardown(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.closed = True
        if self._process is not None:
            self._process.kill()
        self._process = None
        self._transport = None
        self._replica = None
        self._reset_process_state()

    def crash(self) -> str:
        """Kill the process; the disk loses what was not durable."""
        self._teardown()
        return self.disk.crash()

    def stop(self) -> None:
        """Graceful shutdown: queued persist batches are committed first."""
        if self._transport is not None:
            self._transport.closed = True
        self.disk.flush()
        self._teardown()

    def _tick(self, generation: int) -> None:
        if generation != self.generation or not self.alive:
            return
        try:
            self._step(lambda: self.replica.tick(self.now()))
        except NodeFailed:
            return
        self.loop.call_later(TICK_INTERVAL_S, lambda: self._tick(generation))

    def _task_error(self, task: Task[object], error: BaseException) -> None:
        if isinstance(error, NodeFailed | NodeDown):
            return
        text = "".join(traceback.format_exception(error))
        self.loop.halt(f"simulator error in task {task.name} on {self.address}:\n{text}")

    def _fail(self, text: str) -> None:
        self.failure = text
        self.trace.record(self.address, "CORE RAISED: node stops")
        self._on_core_failure(self, text)

    # -- carrying out outputs ----------------------------------------------------------------------

    def _step(self, call: Callable[[], Output]) -> None:
        if self.failure is not None:
            raise NodeFailed("the node stopped after an internal error")
        replica = self.replica
        view_before = replica.view
        try:
            output = call()
        except Exception as error:
            self._fail(traceback.format_exc())
            raise NodeFailed("internal error") from error
        self.statistics.steps += 1
        self._carry(output, view_before, replica.view)

    def _carry(self, output: Output, view_before: View | None, view_after: View | None) -> None:
        for batch in output.persist:
            self.disk.submit(batch)
        durable = self._durable_id
        transport = self.transport
        for outgoing in output.messages:
            if outgoing.after_persist <= durable:
                transport.send(outgoing.destination, outgoing.message)
            else:
                destination, message = outgoing.destination, outgoing.message
                self._hold(
                    outgoing.after_persist,
                    lambda d=destination, m=message: transport.send(d, m),  # type: ignore[misc]
                )
        for completed in output.results:
            if completed.result.items is not None:
                scope_views = [view_before, view_after] if len(output.view_changes) < 2 else []
                self._list_scopes[completed.request_id] = self._list_covers(scope_views)
            future = self._futures.pop(completed.request_id, None)
            if future is None or future.done():
                continue
            if completed.after_persist <= durable:
                future.set_result(completed.result)
            else:
                result = completed.result
                self._hold(
                    completed.after_persist,
                    lambda f=future, r=result: None if f.done() else f.set_result(r),  # type: ignore[misc]
                )
        for epoch in output.view_changes:
            view = self.replica.view
            shard = None if view is None else self.replica.shard_index
            self.trace.record(self.address, f"serves epoch {epoch} (shard {shard})")

    def _list_covers(self, views: list[View | None]) -> tuple[str, ...]:
        """Keys of the workload that the listing vouches for: those owned by this
        node's shard in the view it served (in every candidate view, if the
        step changed views)."""
        scoped: list[tuple[View, int]] = []
        for view in views:
            if view is None:
                continue
            shard = view.shard_index_of_node(self.address)
            if shard is not None:
                scoped.append((view, shard))
        if not scoped:
            return ()
        return tuple(
            key
            for key in self.keyspace
            if all(view.shard_index_for_key(key) == shard for view, shard in scoped)
        )

    def _hold(self, persist_id: int, release: Callable[[], None]) -> None:
        self._held.setdefault(persist_id, []).append(release)

    def _on_durable(self, persist_id: int) -> None:
        if persist_id <= self._durable_id or self._replica is None:
            return
        self._durable_id = persist_id
        self._replica.mark_durable(persist_id)
        for held_id in sorted(i for i in self._held if i <= persist_id):
            for release in self._held.pop(held_id):
                release()

    def _committed(self, batches: list[PersistBatch]) -> None:
        self.invariants.durable(self.address, batches)

    def _new_request(self) -> tuple[int, SimFuture[OperationResult]]:
        request_id = self._next_request_id
        self._next_request_id += 1
        future: SimFuture[OperationResult] = SimFuture(self.loop)
        self._futures[request_id] = future
        return request_id, future

    # -- client operations (mirror of NodeRuntime.execute / _forward) ------------------------------

    async def execute(
        self,
        operation: Operation,
        key: str | None,
        token: Token,
        value: str | None = None,
        forwarded: bool = False,
        with_siblings: bool = False,
    ) -> Answer:
        """Run a client operation here, or on a replica of the key's shard."""
        self.active_requests += 1
        try:
            return await self._execute(operation, key, token, value, forwarded, with_siblings)
        finally:
            self.active_requests -= 1

    async def _execute(
        self,
        operation: Operation,
        key: str | None,
        token: Token,
        value: str | None,
        forwarded: bool,
        with_siblings: bool,
    ) -> Answer:
        deadline_s = self.now() + self.settings.causal_wait_s
        while True:
            request_id, future = self._new_request()
            request = ClientRequest(
                request_id, operation, key, token, value, forwarded, with_siblings
            )
            self._step(lambda r=request: self.replica.submit(self.now(), r))  # type: ignore[misc]
            result = await future
            covers = self._list_scopes.pop(request_id, None)
            if result.kind is not ResultKind.FORWARD:
                return Answer(result, covers)
            result = await self._forward(result.forward_to, request, deadline_s)
            if result.kind is not ResultKind.WRONG_SHARD:
                return Answer(result)
            if self.now() >= deadline_s:
                return Answer(OperationResult(ResultKind.DEPENDENCY_TIMEOUT))
            await self.loop.sleep(0.05)

    async def _forward(
        self, candidates: tuple[str, ...], request: ClientRequest, deadline_s: float
    ) -> OperationResult:
        self.statistics.forwarded_requests += 1
        call = ForwardCall(
            request.operation.value,
            request.key,
            request.value,
            encode_token_bytes(request.token),
            request.with_siblings,
            self.epoch(),
        )
        body = encoder.encode(call)
        health = self.transport.health
        ordered = sorted(
            candidates,
            key=lambda address: health[address].consecutive_failures if address in health else 0,
        )
        if ordered:
            self._forward_cursor += 1
            healthy = [a for a in ordered if a not in health or health[a].consecutive_failures == 0]
            if len(healthy) > 1:
                start = self._forward_cursor % len(healthy)
                healthy = healthy[start:] + healthy[:start]
                ordered = healthy + [a for a in ordered if a not in healthy]
        pause_s = 0.05
        while True:
            for address in ordered:
                remaining_s = deadline_s - self.now()
                if remaining_s <= 0:
                    return OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
                self.trace.record(
                    self.address, f"forward {request.operation.value} {request.key} -> {address}"
                )
                try:
                    reply_body = await self.network.call(
                        self.address,
                        address,
                        remaining_s + 2.0,
                        lambda a=address: self._peer(a).serve_peer_call(body),  # type: ignore[misc]
                    )
                    status, payload = reply_body
                    if status != 200:
                        raise NotDelivered(f"{address} answered {status} to a forward")
                    try:
                        reply = reply_decoder.decode(payload)
                    except msgspec.DecodeError as error:
                        raise PeerUnavailable(f"{address} sent a malformed reply") from error
                    result = result_from_reply(reply)
                except NotDelivered:
                    self.statistics.forward_failures += 1
                    continue
                except (PeerUnavailable, ValueError):
                    self.statistics.forward_failures += 1
                    if request.operation.is_write:
                        return OperationResult(ResultKind.OUTCOME_UNKNOWN)
                    continue
                if result.kind is ResultKind.FORWARD:
                    return OperationResult(ResultKind.WRONG_SHARD)
                return result
            if self.now() + pause_s >= deadline_s:
                return OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
            await self.loop.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.5)

    def _peer(self, address: str) -> SimNode:
        host = self.network.hosts[address]
        assert isinstance(host, SimNode)
        return host

    async def propose_view(self, view: View, self_address: str | None) -> OperationResult:
        request_id, future = self._new_request()
        self._step(lambda: self.replica.propose_view(self.now(), request_id, view, self_address))
        return await future

    # -- peer calls (mirror of NodeRuntime.handle_peer_call) ---------------------------------------

    def receive_envelope_body(self, body: bytes) -> None:
        """An envelope arrived (``POST /kvs/internal/sync`` with an envelope)."""
        try:
            call = call_decoder.decode(body)
        except msgspec.DecodeError:
            self.statistics.peer_calls_rejected += 1
            return
        if not isinstance(call, EnvelopeCall):
            self.statistics.peer_calls_rejected += 1
            return
        envelope = call.envelope
        if (
            not envelope.sender
            or len(envelope.sender) > ADDRESS_CHARS_MAX
            or len(envelope.destination) > ADDRESS_CHARS_MAX
            or envelope.epoch < 0
        ):
            self.statistics.peer_calls_rejected += 1
            return
        self._trace_envelope(envelope)
        self.invariants.received(envelope)
        try:
            self._step(lambda: self.replica.receive(self.now(), envelope))
        except NodeFailed:
            return

    def _trace_envelope(self, envelope: Envelope) -> None:
        kinds = ",".join(describe_message(message) for message in envelope.messages)
        self.trace.record(self.address, f"<- {envelope.sender} e{envelope.epoch} {kinds}")

    def serve_peer_call(self, body: bytes) -> SimFuture[tuple[int, bytes]]:
        """A forwarded client operation arrived; the future is the HTTP reply."""
        return self.process.spawn(self._handle_forward(body), "serve-forward").future

    async def _handle_forward(self, body: bytes) -> tuple[int, bytes]:
        try:
            call = call_decoder.decode(body)
        except msgspec.DecodeError as error:
            self.statistics.peer_calls_rejected += 1
            return 400, encoder.encode({"error": f"malformed peer message: {error}"[:300]})
        if not isinstance(call, ForwardCall):
            self.statistics.peer_calls_rejected += 1
            return 400, encoder.encode({"error": "expected a forwarded operation"})
        operation = OPERATIONS.get(call.operation)
        try:
            if operation is None:
                raise PeerInputError(f"unknown operation {call.operation!r}")
            token = decode_token_bytes(call.token)
            if operation is not Operation.LIST:
                validate_key(call.key)
            if operation is Operation.PUT and call.value is None:
                raise PeerInputError("a forwarded put needs a value")
        except (PeerInputError, TokenError) as error:
            self.statistics.peer_calls_rejected += 1
            return 400, encoder.encode({"error": str(error)[:300]})
        answer = await self.execute(
            operation, call.key, token, call.value, forwarded=True, with_siblings=call.with_siblings
        )
        self.trace.record(
            self.address,
            f"served forwarded {call.operation} {call.key}: {answer.result.kind.value}",
        )
        return 200, encoder.encode(reply_from_result(answer.result))

    # -- the client API (mirror of causalkv.api.sharded.data / listing / put_view) -----------------

    def serve_client(
        self, operation: Operation, key: str | None, token: bytes, value: str | None
    ) -> SimFuture[ClientReply]:
        return self.process.spawn(self._client(operation, key, token, value), "client").future

    async def _client(
        self, operation: Operation, key: str | None, token_bytes: bytes, value: str | None
    ) -> ClientReply:
        try:
            token = decode_token_bytes(token_bytes)
        except TokenError:
            return ClientReply(ResultKind.BAD_REQUEST, None, None, None, None)
        answer = await self.execute(operation, key, token, value)
        result = answer.result
        metadata: bytes | None = None
        if result.kind in (ResultKind.OK, ResultKind.NOT_FOUND):
            metadata = encode_token_bytes(result.token if result.token is not None else token)
        return ClientReply(result.kind, result.value, result.items, metadata, answer.covers)

    def serve_view_change(self, view: View) -> SimFuture[OperationResult]:
        return self.process.spawn(self._view_change(view), "put-view").future

    async def _view_change(self, view: View) -> OperationResult:
        known = self.replica.self_address
        if known is None:
            node = view.node_for_id(self.node_id)
            known = node.address if node is not None else None
        return await self.propose_view(view, known)
