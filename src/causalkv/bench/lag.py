"""Replication lag sampling: how long until a write is visible on every
replica of its shard.

Theory of operation: for a fraction of acknowledged writes (at most
``rate_max`` per second, at most ``in_flight_max`` at once; a write offered
while the sampler is busy is simply not sampled), the sampler polls every
replica of the key's shard *directly* with a fresh session (``{}``
metadata). A GET carrying the writer's metadata would make the replica wait
for the write (a causal wait) and so hide the lag; a fresh session reads
whatever the replica has applied. A replica shows the write when it returns
the written value, or a later value of the same writer client (a session's
later write causally follows its earlier one, so a replica that applied it
applied ours).

Two figures per sample. *From ack* is the time from the writer's
acknowledgement to the receipt of the last replica's first positive answer:
an upper bound that includes the probe's own round trip, which under load is
mostly queueing at the replica (on a single node it is pure measurement
error, the true lag being 0). *Lag* subtracts that round trip as seen on the
fastest replica (the one that already had the write, normally the one that
accepted it): it is the time between the first and the last replica showing
the write to probes sent at the same moment, so equal queueing on the
replicas cancels out. Polls back off to 10 % of the elapsed time (at least
1 ms), so either figure is within about 10 % + one round trip, and a sample
costs a few requests per replica. A write overwritten by another client before a
replica showed it cannot be told apart from one not yet applied: such a
sample ends after ``timeout_s`` and is counted as unresolved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from causalkv.bench.drivers import Session
from causalkv.bench.histogram import Histogram

POLL_INTERVAL_S_MIN = 0.001
POLL_BACKOFF = 0.1

ReplicasForKey = Callable[[bytes], tuple[str, ...]]
SessionFactory = Callable[[str], Session]


def parse_value_tag(value: bytes) -> tuple[bytes, int] | None:
    """``(client tag, sequence)`` of a generated value ``<client>:<seq>:<padding>``."""
    parts = value.split(b":", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def shows_write(seen: bytes, written: bytes, client_tag: bytes, sequence: int) -> bool:
    """Whether a replica answering ``seen`` has applied the write of ``written``."""
    if seen == written:
        return True
    tag = parse_value_tag(seen)
    return tag is not None and tag[0] == client_tag and tag[1] >= sequence


class LagSampler:
    """Samples writes and records their replication lag (ns) in ``histogram``
    (and the upper bound from the acknowledgement in ``histogram_from_ack``)."""

    def __init__(
        self,
        replicas_for_key: ReplicasForKey,
        make_session: SessionFactory,
        task_group: asyncio.TaskGroup,
        fraction: float,
        rate_max: float,
        in_flight_max: int,
        timeout_s: float,
    ) -> None:
        self.replicas_for_key = replicas_for_key
        self.make_session = make_session
        self.task_group = task_group
        self.every = max(1, round(1 / fraction)) if fraction > 0 else 0
        self.spacing_s = 1.0 / rate_max if rate_max > 0 else 0.0
        self.timeout_ns = int(timeout_s * 1e9)
        self.free_slots: list[dict[str, Session]] = [{} for _ in range(in_flight_max)]
        self.all_slots = list(self.free_slots)
        self.active = False
        self.idle = asyncio.Event()
        self.writes_seen = 0
        self.next_allowed_s = 0.0
        self.histogram = Histogram()
        self.histogram_from_ack = Histogram()
        self.sampled = 0
        self.resolved = 0
        self.unresolved = 0
        self.skipped_busy = 0
        self.probes = 0
        self.probe_errors = 0

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def offer(
        self, key: bytes, value: bytes, client_tag: bytes, sequence: int, acked_ns: int
    ) -> None:
        """Called after every acknowledged write (cheap unless the write is sampled)."""
        if not self.active or self.every == 0:
            return
        self.writes_seen += 1
        if self.writes_seen % self.every:
            return
        now = time.monotonic()
        if not self.free_slots or now < self.next_allowed_s:
            self.skipped_busy += 1
            return
        self.next_allowed_s = now + self.spacing_s
        slot = self.free_slots.pop()
        self.sampled += 1
        self.task_group.create_task(self._sample(slot, key, value, client_tag, sequence, acked_ns))

    async def _sample(
        self,
        slot: dict[str, Session],
        key: bytes,
        value: bytes,
        client_tag: bytes,
        sequence: int,
        acked_ns: int,
    ) -> None:
        try:
            replicas = self.replicas_for_key(key)
            sessions = []
            for address in replicas:
                session = slot.get(address)
                if session is None:
                    session = slot[address] = self.make_session(address)
                sessions.append(session)
            seen_at = await asyncio.gather(
                *(
                    self._wait_visible(s, key, value, client_tag, sequence, acked_ns)
                    for s in sessions
                )
            )
        finally:
            self.free_slots.append(slot)
            if len(self.free_slots) == len(self.all_slots):
                self.idle.set()
        moments = [moment for moment in seen_at if moment is not None]
        if sessions and len(moments) == len(sessions):
            self.resolved += 1
            self.histogram.record(max(moments) - min(moments))
            self.histogram_from_ack.record(max(moments) - acked_ns)
        else:
            self.unresolved += 1

    async def _wait_visible(
        self,
        session: Session,
        key: bytes,
        value: bytes,
        client_tag: bytes,
        sequence: int,
        acked_ns: int,
    ) -> int | None:
        while True:
            status, seen = await session.probe(key)
            now_ns = time.perf_counter_ns()
            self.probes += 1
            if status < 0 or status >= 500:
                self.probe_errors += 1
            if seen is not None and shows_write(seen, value, client_tag, sequence):
                return now_ns
            elapsed_ns = now_ns - acked_ns
            if elapsed_ns > self.timeout_ns:
                return None
            await asyncio.sleep(max(POLL_INTERVAL_S_MIN, elapsed_ns * 1e-9 * POLL_BACKOFF))

    async def wait_until_idle(self) -> None:
        """Wait for the samples in flight (each ends within ``timeout_s`` plus one probe)."""
        if len(self.free_slots) < len(self.all_slots):
            self.idle.clear()
            await self.idle.wait()

    def sessions(self) -> list[Session]:
        return [session for slot in self.all_slots for session in slot.values()]

    def close(self) -> None:
        for session in self.sessions():
            session.close()
