"""The simulated network: latency, loss, duplication, reordering, partitions.

Two kinds of traffic, as in the real runtime (both are HTTP requests there):

* ``post_envelope``: a node's transport posts an envelope of protocol
  messages and waits for the empty acknowledgement. This is the unreliable
  traffic the fault model plays with: an envelope may be *dropped* (the
  connection resets; the sender learns of the failure), *duplicated* (a copy
  arrives again later), or *reordered* (it arrives late, after the sender
  was already acknowledged and sent the next one: the runtime promises no
  FIFO order and the core must not rely on one).
* ``call``: a request with a reply (a client operation, a forwarded client
  operation, a ``PUT /view``). It may fail (refused, reset, timed out) but is
  never duplicated: HTTP requests are not.

Partitions are a set of blocked directed links ``(source, destination)``.
Connecting over a blocked link fails after the connect timeout; a request or
reply that is in flight when its link becomes blocked is lost, and the caller
times out. A node that is down refuses connections; a node that dies while
handling a request resets the connection. Clients (``source=None``) are never
partitioned from nodes: they stand for the test harness, as in Jepsen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from causalkv.sim.loop import EventLoop, SimFuture
from causalkv.sim.trace import Trace

R = TypeVar("R")


ENVELOPE_BYTES_MAX = 128 << 20
"""Peer traffic of a whole run is a few MiB (under 2 MiB in 60 sampled seeds);
128 MiB means a message storm, caught before it eats the machine's memory."""


class PeerUnavailable(Exception):
    """The peer could not be reached or did not answer in time (outcome unknown)."""


class NotDelivered(PeerUnavailable):
    """The request certainly never reached the peer (connection refused or not established)."""


@dataclass
class NetworkProfile:
    """How the network behaves in one run (drawn per seed)."""

    latency_min_s: float = 0.0005
    latency_max_s: float = 0.005
    slow_probability: float = 0.0
    """Chance that one message is slowed down by a factor up to ``slow_factor_max``."""
    slow_factor_max: float = 1.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    reorder_delay_max_s: float = 0.0
    connect_timeout_s: float = 1.0

    def describe(self) -> str:
        parts = [f"latency {self.latency_min_s * 1e3:.1f}-{self.latency_max_s * 1e3:.1f}ms"]
        if self.slow_probability:
            parts.append(f"slow {self.slow_probability:.0%}x{self.slow_factor_max:.0f}")
        if self.drop_rate:
            parts.append(f"drop {self.drop_rate:.1%}")
        if self.duplicate_rate:
            parts.append(f"dup {self.duplicate_rate:.1%}")
        if self.reorder_rate:
            parts.append(f"reorder {self.reorder_rate:.1%}<{self.reorder_delay_max_s:.2f}s")
        return " ".join(parts)

    def healed(self) -> NetworkProfile:
        """The same latencies without loss, duplication or reordering."""
        return NetworkProfile(
            self.latency_min_s,
            self.latency_max_s,
            self.slow_probability,
            self.slow_factor_max,
            connect_timeout_s=self.connect_timeout_s,
        )


class Host(Protocol):
    """What the network needs of a node."""

    address: str
    alive: bool
    generation: int

    def receive_envelope_body(self, body: bytes) -> None: ...


class Network:
    def __init__(
        self, loop: EventLoop, rng: random.Random, profile: NetworkProfile, trace: Trace
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.profile = profile
        self.trace = trace
        self.hosts: dict[str, Host] = {}
        self.blocked: frozenset[tuple[str, str]] = frozenset()
        self._cuts: dict[int, frozenset[tuple[str, str]]] = {}
        self._next_cut = 0
        self.requests_in_flight = 0
        """Requests (``call``) sent and not yet arrived: one slowed 200-fold may
        land long after its caller gave up (seed 192241)."""
        self.statistics = {
            "envelopes": 0,
            "envelope_bytes": 0,
            "dropped": 0,
            "duplicated": 0,
            "reordered": 0,
            "lost": 0,
        }
        self.envelope_bytes_max = ENVELOPE_BYTES_MAX

    # -- partitions --------------------------------------------------------------------------------

    def cut(self, links: frozenset[tuple[str, str]]) -> int:
        """Block these directed links until ``heal(cut_id)``; returns the cut id."""
        self._next_cut += 1
        self._cuts[self._next_cut] = links
        self._recompute()
        return self._next_cut

    def heal(self, cut_id: int) -> None:
        self._cuts.pop(cut_id, None)
        self._recompute()

    def heal_all(self) -> None:
        self._cuts.clear()
        self._recompute()

    def _recompute(self) -> None:
        blocked: set[tuple[str, str]] = set()
        for links in self._cuts.values():
            blocked.update(links)
        self.blocked = frozenset(blocked)

    def is_blocked(self, source: str | None, destination: str) -> bool:
        return source is not None and (source, destination) in self.blocked

    # -- delays ------------------------------------------------------------------------------------

    def latency(self) -> float:
        profile = self.profile
        rng = self.rng
        delay = (
            profile.latency_min_s + (profile.latency_max_s - profile.latency_min_s) * rng.random()
        )
        if profile.slow_probability and rng.random() < profile.slow_probability:
            delay *= 1.0 + (profile.slow_factor_max - 1.0) * rng.random()
        return delay

    # -- one-way envelopes -------------------------------------------------------------------------

    def post_envelope(
        self, source: str, destination: str, body: bytes, timeout_s: float, label: str
    ) -> SimFuture[None]:
        """Deliver ``body`` to ``destination``'s ``receive_envelope_body``; the
        future resolves when the sender sees the acknowledgement, or fails with
        ``PeerUnavailable``."""
        loop = self.loop
        rng = self.rng
        profile = self.profile
        ack: SimFuture[None] = SimFuture(loop)
        timeout = loop.call_later(
            timeout_s, lambda: ack.set_exception(PeerUnavailable(f"{destination} timed out"))
        )

        def fail_after(delay_s: float, error: PeerUnavailable) -> None:
            def fire() -> None:
                timeout.cancel()
                ack.set_exception(error)

            loop.call_later(delay_s, fire)

        host = self.hosts.get(destination)
        self.statistics["envelopes"] += 1
        self.statistics["envelope_bytes"] += len(body)
        if self.statistics["envelope_bytes"] > self.envelope_bytes_max:
            limit, self.envelope_bytes_max = self.envelope_bytes_max, 2**62  # report once
            loop.on_runaway(f"runaway: peers sent over {limit:,} bytes of envelopes")
        if self.is_blocked(source, destination):
            fail_after(min(profile.connect_timeout_s, timeout_s), NotDelivered("connect timed out"))
            return ack
        delay = self.latency()
        if host is None or not host.alive:
            fail_after(2 * delay, NotDelivered(f"{destination} refused the connection"))
            return ack
        generation = host.generation
        if profile.drop_rate and rng.random() < profile.drop_rate:
            self.statistics["dropped"] += 1
            self.trace.record(source, f"drop {label} -> {destination}")
            fail_after(2 * delay, PeerUnavailable("connection reset"))
            return ack
        late = bool(profile.reorder_rate) and rng.random() < profile.reorder_rate
        if profile.duplicate_rate and rng.random() < profile.duplicate_rate:
            self.statistics["duplicated"] += 1
            extra = delay + rng.random() * max(profile.reorder_delay_max_s, 4 * delay)
            loop.call_later(
                extra, lambda: self._arrive(source, destination, generation, body, label, None)
            )
        if late:
            # Arrives late, but the sender is acknowledged in time and moves on.
            self.statistics["reordered"] += 1
            extra = delay + rng.random() * profile.reorder_delay_max_s
            loop.call_later(
                extra, lambda: self._arrive(source, destination, generation, body, label, None)
            )

            def acknowledge() -> None:
                timeout.cancel()
                ack.set_result(None)

            loop.call_later(2 * delay, acknowledge)
            return ack

        def arrived() -> None:
            if self._arrive(source, destination, generation, body, label, ack):
                reply_delay = self.latency()

                def acknowledge() -> None:
                    if self.is_blocked(destination, source):
                        return  # the acknowledgement is lost: the sender times out
                    timeout.cancel()
                    ack.set_result(None)

                loop.call_later(reply_delay, acknowledge)

        loop.call_later(delay, arrived)
        return ack

    def _arrive(
        self,
        source: str,
        destination: str,
        generation: int,
        body: bytes,
        label: str,
        ack: SimFuture[None] | None,
    ) -> bool:
        host = self.hosts.get(destination)
        if self.is_blocked(source, destination):
            self.statistics["lost"] += 1
            return False  # lost in the partition; the sender times out
        if host is None or not host.alive or host.generation != generation:
            if ack is not None:
                delay = self.latency()
                self.loop.call_later(
                    delay, lambda: ack.set_exception(PeerUnavailable("connection reset"))
                )
            return False
        host.receive_envelope_body(body)
        return True

    # -- requests with replies ---------------------------------------------------------------------

    def call(
        self,
        source: str | None,
        destination: str,
        timeout_s: float,
        serve: Callable[[], SimFuture[R]],
    ) -> SimFuture[R]:
        """Send a request; ``serve`` runs when it arrives at the destination (alive,
        same incarnation as when sent) and returns the future of the reply. Fails with ``NotDelivered`` when the
        request cannot have reached the destination, ``PeerUnavailable`` when
        the outcome is unknown (reset, timeout)."""
        loop = self.loop
        reply: SimFuture[R] = SimFuture(loop)
        timeout = loop.call_later(
            timeout_s, lambda: reply.set_exception(PeerUnavailable(f"{destination} timed out"))
        )

        def settle_after(delay_s: float, settle: Callable[[], bool]) -> None:
            def fire() -> None:
                if settle():
                    timeout.cancel()

            loop.call_later(delay_s, fire)

        host = self.hosts.get(destination)
        if self.is_blocked(source, destination):
            settle_after(
                min(self.profile.connect_timeout_s, timeout_s),
                lambda: reply.set_exception(NotDelivered("connect timed out")),
            )
            return reply
        delay = self.latency()
        if host is None or not host.alive:
            settle_after(
                2 * delay,
                lambda: reply.set_exception(NotDelivered(f"{destination} refused the connection")),
            )
            return reply
        generation = host.generation

        def arrived() -> None:
            self.requests_in_flight -= 1
            if self.is_blocked(source, destination):
                return  # lost; the caller times out
            if not host.alive or host.generation != generation:
                settle_after(
                    self.latency(), lambda: reply.set_exception(PeerUnavailable("connection reset"))
                )
                return
            served = serve()

            def answered(done: SimFuture[R]) -> None:
                if reply.done():
                    return
                error = done.exception()
                back = self.latency()
                if error is not None or not host.alive or host.generation != generation:
                    settle_after(
                        back, lambda: reply.set_exception(PeerUnavailable("connection reset"))
                    )
                    return
                if source is not None and self.is_blocked(destination, source):
                    return  # the reply is lost; the caller times out
                value = done.result()
                settle_after(back, lambda: reply.set_result(value))

            served.add_done_callback(answered)

        self.requests_in_flight += 1
        loop.call_later(delay, arrived)
        return reply
