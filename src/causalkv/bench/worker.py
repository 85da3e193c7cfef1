"""One generator process: its clients, its clock of reporting intervals, its
lag sampler.

Theory of operation: the controller (``runner``) starts one or more worker
processes, each pinned to the CPUs it was given. A worker connects its
clients, preloads its share of the keys, reports ``READY`` and waits for the
common start time. From then on each client loops: next operation, send,
await the answer, record the latency (ns, ``perf_counter_ns``) and status into
the *current interval*. A ticker swaps the current interval every
``interval_s``; the first ``warmup_intervals`` are kept apart so the report
can leave them out. Counters in shared memory feed the live progress line.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event
from typing import Any

from causalkv.bench.config import BenchConfig
from causalkv.bench.drivers import Session, StoreProtocol, make_session
from causalkv.bench.histogram import Histogram
from causalkv.bench.lag import LagSampler
from causalkv.bench.workloads import (
    OperationKind,
    OperationStream,
    key_name,
    make_key_chooser,
    workload_named,
)

# Slots per worker in the shared progress array.
PROGRESS_FIELDS = 4
FIELD_PHASE, FIELD_OPERATIONS, FIELD_ERRORS, FIELD_START_AT = range(PROGRESS_FIELDS)
PHASE_CONNECTING, PHASE_PRELOADING, PHASE_READY, PHASE_RUNNING, PHASE_DONE = range(5)
OK_STATUSES = frozenset({200, 201, 204, 404})
FAILURE_BACKOFF_S = 0.01
WATCHDOG_PERIOD_S = 0.5


@dataclass
class Interval:
    """What the clients of one worker did in one reporting interval."""

    index: int
    started_s: float = 0.0
    ended_s: float = 0.0
    read: Histogram = field(default_factory=Histogram)
    update: Histogram = field(default_factory=Histogram)
    read_statuses: dict[int, int] = field(default_factory=dict)
    update_statuses: dict[int, int] = field(default_factory=dict)
    metadata_bytes_total: int = 0
    metadata_requests: int = 0
    metadata_bytes_max: int = 0

    @property
    def operations(self) -> int:
        return self.read.total_count + self.update.total_count

    @property
    def errors(self) -> int:
        statuses = (self.read_statuses, self.update_statuses)
        return sum(c for s in statuses for status, c in s.items() if status not in OK_STATUSES)


@dataclass
class LagSummary:
    histogram: Histogram
    histogram_from_ack: Histogram
    sampled: int
    resolved: int
    unresolved: int
    skipped_busy: int
    probes: int
    probe_errors: int


@dataclass
class WorkerResult:
    """Everything a worker reports back (pickled to the controller)."""

    worker: int
    intervals: list[Interval]
    lag: LagSummary | None
    cpu_s: float
    measured_wall_s: float
    largest_metadata: bytes
    preload_s: float
    preload_errors: int
    error: str | None = None


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process is asked to do (picklable)."""

    config: BenchConfig
    worker: int
    client_ids: tuple[int, ...]
    preload_keys: tuple[int, ...]
    view: Any  # the sharded view JSON (causalkv) or None
    lag_replicas: tuple[str, ...]  # etcd: every member; causalkv: from the view


def make_value(client_tag: bytes, sequence: int, size: int, padding: bytes) -> bytes:
    """A unique, JSON-safe value: ``<client>:<seq>:`` padded to ``size`` bytes."""
    head = client_tag + b":%d:" % sequence
    missing = size - len(head)
    return head + padding[:missing] if missing > 0 else head


def replicas_function(plan: WorkerPlan) -> Callable[[bytes], tuple[str, ...]] | None:
    """key -> replica addresses of its shard, or None if lag cannot be measured."""
    if plan.config.protocol is StoreProtocol.CAUSALKV and plan.view:
        from causalkv.core.view import parse_sharded_view

        view = parse_sharded_view(plan.view)

        def for_key(key: bytes) -> tuple[str, ...]:
            return view.replicas(view.shard_index_for_key(urllib.parse.unquote(key.decode())))

        return for_key
    if plan.lag_replicas:
        replicas = plan.lag_replicas
        return lambda key: replicas
    return None


class Worker:
    """Runs the clients of one worker process."""

    def __init__(self, plan: WorkerPlan, progress: SynchronizedArray[float], stop: Event) -> None:
        self.plan = plan
        self.config = plan.config
        self.progress = progress
        self.stop_requested = stop
        self.base = plan.worker * PROGRESS_FIELDS
        self.stopping = False
        self.key_bytes = [
            urllib.parse.quote(key_name(i), safe="").encode() for i in range(self.config.keys)
        ]
        self.padding = b"v" * self.config.value_size
        self.current = Interval(-1)
        self.intervals: list[Interval] = []
        self.sessions: list[Session] = []
        self.sampler: LagSampler | None = None
        self.largest_metadata = b"{}"
        self.largest_metadata_size = 0
        self.operations_total = 0
        self.errors_total = 0
        self.start_at = 0.0

    def _set(self, slot: int, value: float) -> None:
        self.progress[self.base + slot] = value

    async def run(self) -> WorkerResult:
        config = self.config
        targets = config.targets
        for client in self.plan.client_ids:
            # spread clients over the targets by their global number
            self.sessions.append(make_session(config.protocol, targets[client % len(targets)]))
        await asyncio.gather(*(session.connect() for session in self.sessions))
        self._set(FIELD_PHASE, PHASE_PRELOADING)
        preload_started = time.monotonic()
        preload_errors = await self._preload() if config.preload else 0
        preload_s = time.monotonic() - preload_started
        for session in self.sessions:
            session.reset()
        self._set(FIELD_PHASE, PHASE_READY)
        start_at = self.start_at = await self._wait_for_start()
        self._set(FIELD_PHASE, PHASE_RUNNING)
        async with asyncio.TaskGroup() as group:
            replicas = replicas_function(self.plan)
            if replicas is not None and config.lag_fraction > 0:
                protocol = config.protocol
                self.sampler = LagSampler(
                    replicas,
                    lambda address: make_session(protocol, address),
                    group,
                    config.lag_fraction / config.processes,
                    config.lag_samples_per_s_max,
                    config.lag_in_flight_max,
                    config.lag_timeout_s,
                )
            clients = [
                group.create_task(self._client(session, client))
                for session, client in zip(self.sessions, self.plan.client_ids, strict=True)
            ]
            watchdog = group.create_task(self._watchdog())
            cpu_s, wall_s = await self._tick(start_at)
            self.stopping = True
            if self.sampler is not None:
                self.sampler.active = False
            await asyncio.gather(*clients)
            if self.sampler is not None:
                await self.sampler.wait_until_idle()  # the watchdog still guards its probes
            watchdog.cancel()
        for session in self.sessions:
            session.close()
        lag = None
        if self.sampler is not None:
            sampler = self.sampler
            sampler.close()
            lag = LagSummary(
                sampler.histogram,
                sampler.histogram_from_ack,
                sampler.sampled,
                sampler.resolved,
                sampler.unresolved,
                sampler.skipped_busy,
                sampler.probes,
                sampler.probe_errors,
            )
        self._set(FIELD_PHASE, PHASE_DONE)
        return WorkerResult(
            self.plan.worker,
            self.intervals,
            lag,
            cpu_s,
            wall_s,
            self.largest_metadata,
            preload_s,
            preload_errors,
        )

    async def _preload(self) -> int:
        """Write this worker's share of the keys, with ``preload_clients`` sessions."""
        config = self.config
        keys = self.plan.preload_keys
        sessions = [
            make_session(config.protocol, config.targets[i % len(config.targets)])
            for i in range(min(config.preload_clients, max(1, len(keys))))
        ]
        errors = 0
        tag = b"p%d" % self.plan.worker

        async def load(position: int, session: Session) -> None:
            nonlocal errors
            for sequence, index in enumerate(keys[position :: len(sessions)], start=1):
                value = make_value(
                    tag + b"_%d" % position, sequence, config.value_size, self.padding
                )
                for _ in range(5):
                    status = await session.update(self.key_bytes[index], value)
                    if status in OK_STATUSES:
                        break
                    errors += 1
                    await asyncio.sleep(0.05)
                session.reset()  # keep preload sessions from growing one big session

        try:
            await asyncio.gather(*(load(p, s) for p, s in enumerate(sessions)))
        finally:
            for session in sessions:
                session.close()
        return errors

    async def _wait_for_start(self) -> float:
        while True:
            start_at = self.progress[self.base + FIELD_START_AT]
            if start_at > 0:
                return float(start_at)
            if self.stop_requested.is_set():
                return time.monotonic()
            await asyncio.sleep(0.005)

    async def _tick(self, start_at: float) -> tuple[float, float]:
        """Swap intervals on schedule; returns generator CPU and wall time measured."""
        config = self.config
        warmup = config.warmup_intervals
        total = warmup + config.measured_intervals
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        self.current = Interval(0, started_s=time.monotonic())
        cpu_started = wall_started = 0.0
        cpu_s = wall_s = 0.0
        for index in range(total):
            if index == warmup:
                cpu_started = _cpu_s()
                wall_started = time.monotonic()
                if self.sampler is not None:
                    self.sampler.active = True
            boundary = start_at + (index + 1) * config.interval_s
            await asyncio.sleep(max(0.0, boundary - time.monotonic()))
            now = time.monotonic()
            finished = self.current
            finished.ended_s = now
            self.current = Interval(index + 1, started_s=now)
            self.intervals.append(finished)
            self.operations_total += finished.operations
            self.errors_total += finished.errors
            self._set(FIELD_OPERATIONS, self.operations_total)
            self._set(FIELD_ERRORS, self.errors_total)
            if self.stop_requested.is_set():
                break
        if wall_started:
            cpu_s = _cpu_s() - cpu_started
            wall_s = time.monotonic() - wall_started
        return cpu_s, wall_s

    async def _watchdog(self) -> None:
        timeout_s = self.config.request_timeout_s
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            for session in self.sessions:
                session.abort_if_stuck(now, timeout_s)
            if self.sampler is not None:
                for session in self.sampler.sessions():
                    session.abort_if_stuck(now, timeout_s)

    async def _client(self, session: Session, client: int) -> None:
        """One closed-loop client: the hot path of the generator."""
        config = self.config
        rng = random.Random(config.seed * 1_000_003 + client)
        chooser = make_key_chooser(config.distribution, config.keys, rng, config.zipf_theta)
        stream = OperationStream(workload_named(config.workload), chooser, rng)
        keys = self.key_bytes
        tag = b"c%d" % client
        padding = self.padding
        size = config.value_size
        read_kind = OperationKind.READ
        clock = time.perf_counter_ns
        sequence = 0
        await asyncio.sleep(max(0.0, self.start_at - time.monotonic()))
        while not self.stopping:
            kind, index = stream.next_operation()
            key = keys[index]
            if kind is read_kind:
                started = clock()
                status = await session.read(key)
                latency = clock() - started
                interval = self.current
                interval.read.record(latency)
                statuses = interval.read_statuses
            else:
                sequence += 1
                value = make_value(tag, sequence, size, padding)
                started = clock()
                status = await session.update(key, value)
                acked = clock()
                interval = self.current
                interval.update.record(acked - started)
                statuses = interval.update_statuses
                if status == 200 and self.sampler is not None:
                    self.sampler.offer(key, value, tag, sequence, acked)
            statuses[status] = statuses.get(status, 0) + 1
            sent = session.metadata_size
            interval.metadata_bytes_total += sent
            interval.metadata_requests += 1
            if sent > interval.metadata_bytes_max:
                interval.metadata_bytes_max = sent
            if sent > self.largest_metadata_size:
                self.largest_metadata_size = sent
                self.largest_metadata = session.metadata
            if status < 0:
                await asyncio.sleep(FAILURE_BACKOFF_S)


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def worker_main(
    plan: WorkerPlan,
    progress: SynchronizedArray[float],
    stop: Event,
    results: Any,
) -> None:
    """Entry point of a worker process: pin, run, send the result (or the error)."""
    if plan.config.cpus and hasattr(os, "sched_setaffinity"):
        cpus = plan.config.cpus
        os.sched_setaffinity(0, {cpus[plan.worker % len(cpus)]})
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover (uvloop is a dependency off Windows)
        runner = asyncio.run
    worker = Worker(plan, progress, stop)
    try:
        result = runner(worker.run())
    except Exception as error:
        progress[plan.worker * PROGRESS_FIELDS + FIELD_PHASE] = PHASE_DONE
        result = WorkerResult(plan.worker, [], None, 0.0, 0.0, b"{}", 0.0, 0, repr(error))
    results.put(result)
