"""The node runtime: drives one replica with real time, storage and network.

It is the only place where the core meets I/O. It feeds the replica client
requests, peer envelopes and ticks, and carries out each ``Output`` in the
order the core requires: persist batches go to storage; messages and replies
that depend on a batch are held until storage reports it durable; the rest go
out at once. Requests for keys of other shards are relayed to a replica of the
owning shard (trying the next one when one is unreachable) until the causal
wait bound.

If the core ever raises, the node stops (fail-stop): a half-applied step must
never serve data. Durable storage makes a restart safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from causalkv.core.effects import Output
from causalkv.core.messages import Envelope
from causalkv.core.replica import Replica
from causalkv.core.requests import ClientRequest, Operation, OperationResult, ResultKind
from causalkv.core.token import Token, TokenError, decode_token_bytes, encode_token_bytes
from causalkv.core.view import View
from causalkv.core.wire import PeerInputError, validate_key
from causalkv.runtime.http_client import HttpClientPool, NotDelivered, PeerUnavailable
from causalkv.runtime.peer_protocol import (
    OPERATIONS,
    EnvelopeCall,
    ForwardCall,
    call_decoder,
    encoder,
    reply_from_result,
    result_from_reply,
)
from causalkv.runtime.settings import NodeSettings
from causalkv.runtime.storage import Storage, open_storage
from causalkv.runtime.transport import PeerTransport

log = logging.getLogger("causalkv.node")

ADDRESS_CHARS_MAX = 261


class NodeFailed(RuntimeError):
    """The core raised; the node stopped serving."""


@dataclass
class NodeStatistics:
    forwarded_requests: int = 0
    forward_failures: int = 0
    peer_calls_rejected: int = 0


class NodeRuntime:
    def __init__(self, settings: NodeSettings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage or open_storage(
            settings.storage,
            settings.data_dir,
            settings.cluster_name,
            settings.node_id,
            fsync=not settings.unsafe_async_commit,
        )
        started = time.perf_counter()
        meta, entries = self.storage.load()
        if meta is None:
            self.replica = Replica(settings.replica, os.urandom(6))
            self.replica.self_address = settings.advertise_address
        else:
            self.replica = Replica.restore(settings.replica, meta, entries)
            if self.replica.self_address is None:
                self.replica.self_address = settings.advertise_address
        self.recovery_s = time.perf_counter() - started
        ssl_context = None
        if settings.tls:
            import ssl

            ssl_context = ssl.create_default_context(
                cafile=None if settings.tls_ca is None else str(settings.tls_ca)
            )
        self.transport = PeerTransport(
            HttpClientPool(
                connect_timeout_s=settings.peer_connect_timeout_s, ssl_context=ssl_context
            ),
            sender_address=lambda: self.replica.self_address or "",
            epoch=self._view_identity,
            secret=settings.cluster_secret,
            send_timeout_s=settings.peer_send_timeout_s,
        )
        self.statistics = NodeStatistics()
        self.failure: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_view_change: Callable[[int], None] | None = None
        self.on_causal_wait: Callable[[float, bool], None] | None = None
        """Called with (seconds waited, timed out) for every request that waited."""
        self._futures: dict[int, asyncio.Future[OperationResult]] = {}
        self._next_request_id = 1
        self._durable_id = 0
        self._held: dict[int, list[Callable[[], None]]] = {}
        self._durable_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forward_cursor = 0

    def _epoch(self) -> int:
        view = self.replica.view
        return 0 if view is None else view.epoch

    def _view_identity(self) -> tuple[int, bytes]:
        view = self.replica.view
        return (0, b"") if view is None else (view.epoch, view.digest)

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.storage.start(self._loop, self._on_durable)
        self._tick_task = self._loop.create_task(self._tick_forever(), name="causalkv-tick")

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        await self.transport.close()
        await asyncio.to_thread(self.storage.close)

    async def _tick_forever(self) -> None:
        interval_s = self.settings.tick_interval_s
        while True:
            await asyncio.sleep(interval_s)
            self._step(lambda: self.replica.tick(self._now()))

    # -- carrying out outputs --------------------------------------------------------------------------

    def _step(self, call: Callable[[], Output]) -> None:
        if self.failure is not None:
            raise NodeFailed("the node stopped after an internal error") from self.failure
        try:
            output = call()
        except BaseException as error:
            self.failure = error
            log.critical("internal error in the replica state machine; stopping", exc_info=error)
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(NodeFailed("internal error"))
            if self.on_failure is not None:
                self.on_failure(error)
            raise NodeFailed("internal error") from error
        self._carry(output)

    def _carry(self, output: Output) -> None:
        for batch in output.persist:
            self.storage.submit(batch)
            if self.settings.unsafe_async_commit or self.settings.storage == "memory":
                self._on_durable(batch.persist_id)
        durable = self._durable_id
        for outgoing in output.messages:
            if outgoing.after_persist <= durable:
                self.transport.send(outgoing.destination, outgoing.message)
            else:
                destination, message = outgoing.destination, outgoing.message
                self._hold(
                    outgoing.after_persist,
                    lambda d=destination, m=message: self.transport.send(d, m),  # type: ignore[misc]
                )
        for completed in output.results:
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
        if output.view_changes and self.on_view_change is not None:
            for epoch in output.view_changes:
                self.on_view_change(epoch)

    def _hold(self, persist_id: int, release: Callable[[], None]) -> None:
        self._held.setdefault(persist_id, []).append(release)

    def _on_durable(self, persist_id: int) -> None:
        if persist_id <= self._durable_id:
            return
        self._durable_id = persist_id
        self.replica.mark_durable(persist_id)
        for held_id in sorted(i for i in self._held if i <= persist_id):
            for release in self._held.pop(held_id):
                release()
        for waited_id in [i for i in self._durable_waiters if i <= persist_id]:
            for waiter in self._durable_waiters.pop(waited_id):
                if not waiter.done():
                    waiter.set_result(None)

    def _new_request(self) -> tuple[int, asyncio.Future[OperationResult]]:
        request_id = self._next_request_id
        self._next_request_id += 1
        future: asyncio.Future[OperationResult] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return request_id, future

    # -- client operations --------------------------------------------------------------------------------

    async def execute(
        self,
        operation: Operation,
        key: str | None,
        token: Token,
        value: str | None = None,
        forwarded: bool = False,
        with_siblings: bool = False,
    ) -> OperationResult:
        """Run a client operation here, or on a replica of the key's shard."""
        deadline_s = self._now() + self.settings.replica.causal_wait_s
        while True:
            request_id, future = self._new_request()
            request = ClientRequest(
                request_id, operation, key, token, value, forwarded, with_siblings
            )
            waits_before = self.replica.counters.causal_waits
            self._step(lambda r=request: self.replica.submit(self._now(), r))  # type: ignore[misc]
            if self.replica.counters.causal_waits == waits_before or self.on_causal_wait is None:
                result = await future
            else:
                waited_from = time.perf_counter()
                result = await future
                self.on_causal_wait(
                    time.perf_counter() - waited_from, result.kind is ResultKind.DEPENDENCY_TIMEOUT
                )
            if result.kind is not ResultKind.FORWARD:
                return result
            result = await self._forward(result.forward_to, request, deadline_s)
            if result.kind is not ResultKind.WRONG_SHARD:
                return result
            if self._now() >= deadline_s:
                return OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
            await asyncio.sleep(0.05)

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
            self._epoch(),
        )
        health = self.transport.health
        now_s = time.monotonic()

        def recently_failed(address: str) -> int:
            # Failures fade after a few seconds, so a recovered replica is tried again.
            peer = health.get(address)
            if peer is None or now_s - peer.last_failure_s > 3.0:
                return 0
            return peer.consecutive_failures

        ordered = sorted(candidates, key=recently_failed)
        if ordered:
            self._forward_cursor += 1
            healthy = [a for a in ordered if recently_failed(a) == 0]
            if len(healthy) > 1:
                start = self._forward_cursor % len(healthy)
                healthy = healthy[start:] + healthy[:start]
                ordered = healthy + [a for a in ordered if a not in healthy]
        pause_s = 0.05
        while True:
            stale_target = False
            for address in ordered:
                remaining_s = deadline_s - self._now()
                if remaining_s <= 0:
                    return OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
                try:
                    reply = await self.transport.forward(address, call, remaining_s + 2.0)
                    result = result_from_reply(reply)
                except NotDelivered as error:
                    self.statistics.forward_failures += 1
                    log.debug("forward to %s failed: %s", address, error)
                    continue
                except (PeerUnavailable, ValueError) as error:
                    self.statistics.forward_failures += 1
                    log.debug("forward to %s failed: %s", address, error)
                    if request.operation.is_write:
                        # It may have been applied: sending it again (there or to
                        # another replica) could apply it a second time, after
                        # writes that depend on it. The client decides.
                        return OperationResult(ResultKind.OUTCOME_UNKNOWN)
                    continue
                if result.kind in (ResultKind.NOT_MEMBER, ResultKind.NO_VIEW):
                    # Views differ mid-change: that replica left (or has not joined yet).
                    stale_target = True
                    continue
                if result.kind is ResultKind.FORWARD:
                    return OperationResult(ResultKind.WRONG_SHARD)
                return result
            if stale_target:
                return OperationResult(ResultKind.WRONG_SHARD)
            if self._now() + pause_s >= deadline_s:
                return OperationResult(ResultKind.DEPENDENCY_TIMEOUT)
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.5)

    def rename_self(self, address: str) -> None:
        self._step(lambda: self.replica.rename_self(self._now(), address))

    async def propose_view(self, view: View, self_address: str | None) -> OperationResult:
        request_id, future = self._new_request()
        self._step(lambda: self.replica.propose_view(self._now(), request_id, view, self_address))
        return await future

    async def reset(self) -> None:
        next_id_before = self.replica._next_persist_id
        self._step(lambda: self.replica.reset(self._now()))
        persist_id = self.replica._next_persist_id - 1
        if persist_id >= next_id_before:
            await self._wait_durable(persist_id)

    async def _wait_durable(self, persist_id: int) -> None:
        if persist_id <= self._durable_id:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.setdefault(persist_id, []).append(future)
        await future

    # -- peer calls ---------------------------------------------------------------------------------------

    async def handle_peer_call(self, body: bytes) -> tuple[int, bytes]:
        """Handle ``POST /kvs/internal/sync``; returns (status, MessagePack body)."""
        try:
            call = call_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError) as error:
            self.statistics.peer_calls_rejected += 1
            return 400, encoder.encode({"error": f"malformed peer message: {error}"[:300]})
        if isinstance(call, EnvelopeCall):
            if len(call.envelope.messages) > self.settings.peer_messages_per_envelope_max:
                self.statistics.peer_calls_rejected += 1
                return 400, encoder.encode({"error": "too many messages in one envelope"})
            return self._receive_envelope(call.envelope)
        return await self._serve_forward(call)

    def _receive_envelope(self, envelope: Envelope) -> tuple[int, bytes]:
        if (
            not envelope.sender
            or len(envelope.sender) > ADDRESS_CHARS_MAX
            or len(envelope.destination) > ADDRESS_CHARS_MAX
            or envelope.epoch < 0
        ):
            self.statistics.peer_calls_rejected += 1
            return 400, encoder.encode({"error": "malformed envelope"})
        self._step(lambda: self.replica.receive(self._now(), envelope))
        return 204, b""

    async def _serve_forward(self, call: ForwardCall) -> tuple[int, bytes]:
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
        result = await self.execute(
            operation, call.key, token, call.value, forwarded=True, with_siblings=call.with_siblings
        )
        return 200, encoder.encode(reply_from_result(result))
