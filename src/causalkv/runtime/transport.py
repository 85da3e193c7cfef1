"""Sending protocol messages to peers, batched per destination.

Each destination has a queue and at most one envelope in flight: while one is
on the wire, new messages accumulate and go together in the next envelope, so
batching grows with load without adding latency when idle. Messages are
encoded once, when queued. Delivery is best effort: a failed envelope is
dropped (the protocol retries what matters: anti-entropy, transfers and view
changes resend until acknowledged), and the queue is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from causalkv.core.messages import PeerMessage
from causalkv.runtime.http_client import HttpClientPool, NotDelivered, PeerUnavailable
from causalkv.runtime.peer_protocol import (
    PEER_CONTENT_TYPE,
    PEER_PATH,
    ForwardCall,
    ForwardReply,
    encoder,
    reply_decoder,
)

log = logging.getLogger("causalkv.transport")


class _OutgoingEnvelope(msgspec.Struct):
    sender: str
    destination: str
    epoch: int
    messages: list[msgspec.Raw]
    digest: bytes = b""


class _OutgoingEnvelopeCall(msgspec.Struct, tag="envelope"):
    envelope: _OutgoingEnvelope


@dataclass
class PeerHealth:
    last_success_s: float = 0.0
    last_failure_s: float = 0.0
    consecutive_failures: int = 0
    envelopes_sent: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    bytes_sent: int = 0

    @property
    def reachable(self) -> bool:
        return self.consecutive_failures == 0 and self.last_success_s > 0


@dataclass
class _Channel:
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    task: asyncio.Task[None] | None = None


class PeerTransport:
    def __init__(
        self,
        pool: HttpClientPool,
        sender_address: Callable[[], str],
        epoch: Callable[[], tuple[int, bytes]],
        secret: str | None,
        envelope_bytes_max: int = 16 * 1024 * 1024,
        queue_bytes_max: int = 256 * 1024 * 1024,
        send_timeout_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self._sender_address = sender_address
        self._epoch = epoch
        self._headers = {"Content-Type": PEER_CONTENT_TYPE}
        if secret is not None:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._envelope_bytes_max = envelope_bytes_max
        self._queue_bytes_max = queue_bytes_max
        self._send_timeout_s = send_timeout_s
        self._channels: dict[str, _Channel] = {}
        self.health: dict[str, PeerHealth] = {}
        self._closed = False
        self.held_destinations: set[str] | None = set()
        """Test hook: drop messages to these peers (None = to every peer)."""

    def holds(self, destination: str) -> bool:
        held = self.held_destinations
        return held is None or destination in held

    def send(self, destination: str, message: PeerMessage) -> None:
        if self._closed or self.holds(destination):
            return
        encoded = encoder.encode(message)
        channel = self._channels.get(destination)
        if channel is None:
            channel = self._channels[destination] = _Channel()
        channel.queue.append(encoded)
        channel.queued_bytes += len(encoded)
        while channel.queued_bytes > self._queue_bytes_max and len(channel.queue) > 1:
            dropped = channel.queue.popleft()
            channel.queued_bytes -= len(dropped)
            self._health(destination).messages_dropped += 1
        if channel.task is None or channel.task.done():
            channel.task = asyncio.get_running_loop().create_task(
                self._drain(destination, channel), name=f"peer-send-{destination}"
            )

    def _health(self, destination: str) -> PeerHealth:
        health = self.health.get(destination)
        if health is None:
            health = self.health[destination] = PeerHealth()
        return health

    async def _drain(self, destination: str, channel: _Channel) -> None:
        backoff_s = 0.05
        while channel.queue and not self._closed:
            batch: list[msgspec.Raw] = []
            size = 0
            while channel.queue and (
                not batch or size + len(channel.queue[0]) <= self._envelope_bytes_max
            ):
                encoded = channel.queue.popleft()
                channel.queued_bytes -= len(encoded)
                size += len(encoded)
                batch.append(msgspec.Raw(encoded))
            epoch, digest = self._epoch()
            call = _OutgoingEnvelopeCall(
                _OutgoingEnvelope(self._sender_address(), destination, epoch, batch, digest)
            )
            body = encoder.encode(call)
            health = self._health(destination)
            # Small envelopes must not sit on a dead connection; big hand-off chunks
            # take longer to send and to apply at the receiver.
            timeout_s = self._send_timeout_s + len(body) / 2_000_000
            try:
                response = await self.pool.request(
                    destination, "POST", PEER_PATH, body, self._headers, timeout_s
                )
                if response.status >= 300:
                    raise PeerUnavailable(f"{destination} answered {response.status}")
            except PeerUnavailable as error:
                health.last_failure_s = time.monotonic()
                health.consecutive_failures += 1
                health.messages_dropped += len(batch)
                log.debug("dropped %d messages to %s: %s", len(batch), destination, error)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 0.25)
                continue
            backoff_s = 0.05
            health.last_success_s = time.monotonic()
            health.consecutive_failures = 0
            health.envelopes_sent += 1
            health.messages_sent += len(batch)
            health.bytes_sent += len(body)

    async def forward(self, destination: str, call: ForwardCall, timeout_s: float) -> ForwardReply:
        """Run a client operation on a peer; raises PeerUnavailable.

        Outcomes feed the peer's health, so later forwards try reachable replicas first.
        """
        health = self._health(destination)
        try:
            response = await self.pool.request(
                destination,
                "POST",
                PEER_PATH,
                encoder.encode(call),
                self._headers,
                timeout_s,
                fresh=True,
            )
            if response.status != 200:
                # The peer refused the call before running it (it answers every
                # operation it ran with 200 and the result inside).
                raise NotDelivered(f"{destination} answered {response.status} to a forward")
            reply = reply_decoder.decode(response.body)
        except (msgspec.DecodeError, RecursionError) as error:
            health.last_failure_s = time.monotonic()
            health.consecutive_failures += 1
            raise PeerUnavailable(f"{destination} sent a malformed reply: {error}") from error
        except PeerUnavailable:
            health.last_failure_s = time.monotonic()
            health.consecutive_failures += 1
            raise
        health.last_success_s = time.monotonic()
        health.consecutive_failures = 0
        return reply

    async def close(self) -> None:
        self._closed = True
        tasks = [
            c.task for c in self._channels.values() if c.task is not None and not c.task.done()
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pool.close()
