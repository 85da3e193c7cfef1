"""The controller: discover the cluster, start the worker processes, show
progress, collect their results and build the report.

Why separate processes: a Python load generator is CPU-bound, and on a small
machine the generator and the servers compete for cores. Workers run in
their own processes (``spawn``), each pinned to a CPU of ``--cpus`` if given,
so the benchmark can give the generator one core and the servers the rest;
the controller only sleeps and redraws the progress line.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from causalkv.bench.config import BenchConfig
from causalkv.bench.drivers import StoreProtocol
from causalkv.bench.report import build_report
from causalkv.bench.worker import (
    FIELD_ERRORS,
    FIELD_OPERATIONS,
    FIELD_PHASE,
    FIELD_START_AT,
    PHASE_DONE,
    PHASE_READY,
    PHASE_RUNNING,
    PROGRESS_FIELDS,
    WorkerPlan,
    WorkerResult,
    worker_main,
)

START_DELAY_S = 0.1
PROGRESS_PERIOD_S = 0.25
READY_TIMEOUT_S = 600.0


class BenchError(RuntimeError):
    """The benchmark could not run (unreachable target, a worker failed, ...)."""


@dataclass(frozen=True)
class Progress:
    """A snapshot for the live progress line."""

    phase: str
    elapsed_s: float
    total_s: float
    operations: int
    errors: int
    operations_per_s: float


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Discovery:
    """What the controller learnt about the target before starting."""

    view: Any
    lag_replicas: tuple[str, ...]
    lag_note: str


def discover(config: BenchConfig) -> Discovery:
    """Find the replicas the lag sampler must poll.

    causalkv: ``GET /view`` of the first target (placement is computed per key
    from it). etcd: every target is a member holding every key. Redis: one
    server, no replication to measure.
    """
    if config.lag_fraction == 0:
        return Discovery(None, (), "lag sampling disabled")
    if config.protocol is StoreProtocol.ETCD:
        if len(config.targets) < 2:
            return Discovery(None, (), "one etcd member given: no replicas to poll")
        return Discovery(None, config.targets, "serializable reads of every etcd member")
    if config.protocol is StoreProtocol.REDIS:
        return Discovery(None, (), "a single Redis server has no replicas")
    from causalkv.core.view import ViewError, parse_sharded_view
    from causalkv.local_cluster import http_json

    try:
        status, body = http_json("GET", f"http://{config.targets[0]}/view", timeout_s=5.0)
    except OSError as error:
        raise BenchError(f"cannot reach {config.targets[0]}: {error}") from error
    view = body.get("view") if isinstance(body, dict) else None
    if status != 200 or not view:
        return Discovery(None, (), "the target serves no view: no replicas to poll")
    try:
        parsed = parse_sharded_view(view)
    except ViewError as error:
        return Discovery(None, (), f"the target's view does not parse: {error}")
    replicas = max(len(shard.nodes) for shard in parsed.shards)
    note = f"fresh-session reads of every replica ({len(parsed.shards)} shards x {replicas})"
    return Discovery(view, (), note)


def plan_workers(config: BenchConfig, discovery: Discovery) -> list[WorkerPlan]:
    """Deal clients and preload keys out over the worker processes."""
    plans = []
    for worker in range(config.processes):
        plans.append(
            WorkerPlan(
                config=config,
                worker=worker,
                client_ids=tuple(range(worker, config.clients, config.processes)),
                preload_keys=tuple(range(worker, config.keys, config.processes)),
                view=discovery.view,
                lag_replicas=discovery.lag_replicas,
            )
        )
    return plans


def run_benchmark(
    config: BenchConfig, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Run one benchmark and return its report (see ``report.build_report``)."""
    config.validate()
    discovery = discover(config)
    plans = plan_workers(config, discovery)
    context = multiprocessing.get_context("spawn")
    progress = context.Array("d", PROGRESS_FIELDS * len(plans))
    stop = context.Event()
    results: multiprocessing.Queue[WorkerResult] = context.Queue()
    processes = [
        context.Process(
            target=worker_main,
            args=(plan, progress, stop, results),
            name=f"causalkv-bench-worker-{plan.worker}",
            daemon=True,
        )
        for plan in plans
    ]
    started_wall = time.time()
    for process in processes:
        process.start()
    collected: list[WorkerResult] = []
    try:
        _wait_until_ready(plans, progress, processes, results, collected, on_progress)
        start_at = time.monotonic() + START_DELAY_S
        for plan in plans:
            progress[plan.worker * PROGRESS_FIELDS + FIELD_START_AT] = start_at
        _follow(config, plans, progress, processes, results, collected, start_at, on_progress)
    except KeyboardInterrupt:
        stop.set()
        _drain(processes, results, collected, deadline_s=time.monotonic() + 30)
        if len(collected) < len(plans):
            raise
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    failures = [result.error for result in collected if result.error]
    if failures:
        raise BenchError("a generator process failed: " + "; ".join(failures))
    return build_report(config, discovery.lag_note, collected, started_wall)


def _phases(plans: list[WorkerPlan], progress: Any) -> list[int]:
    return [int(progress[p.worker * PROGRESS_FIELDS + FIELD_PHASE]) for p in plans]


def _collect(results: Any, collected: list[WorkerResult], wait_s: float) -> None:
    with contextlib.suppress(queue.Empty):
        collected.append(results.get(timeout=wait_s))
        while True:
            collected.append(results.get_nowait())


def _check_alive(processes: list[Any], collected: list[WorkerResult]) -> None:
    reported = {result.worker for result in collected}
    for index, process in enumerate(processes):
        if index not in reported and process.exitcode is not None:
            raise BenchError(f"generator process {index} exited with status {process.exitcode}")


def _wait_until_ready(
    plans: list[WorkerPlan],
    progress: Any,
    processes: list[Any],
    results: Any,
    collected: list[WorkerResult],
    on_progress: ProgressCallback | None,
) -> None:
    started = time.monotonic()
    while True:
        phases = _phases(plans, progress)
        if all(phase >= PHASE_READY for phase in phases):
            failed = [r.error for r in collected if r.error]
            if failed:
                raise BenchError("a generator process failed: " + "; ".join(failed))
            return
        _collect(results, collected, PROGRESS_PERIOD_S)
        _check_alive(processes, collected)
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise BenchError(f"the generator was not ready after {READY_TIMEOUT_S} s")
        if on_progress is not None:
            label = "preloading" if any(phase >= 1 for phase in phases) else "connecting"
            on_progress(Progress(label, time.monotonic() - started, 0.0, 0, 0, 0.0))


def _follow(
    config: BenchConfig,
    plans: list[WorkerPlan],
    progress: Any,
    processes: list[Any],
    results: Any,
    collected: list[WorkerResult],
    start_at: float,
    on_progress: ProgressCallback | None,
) -> None:
    total_s = (config.warmup_intervals + config.measured_intervals) * config.interval_s
    deadline = start_at + total_s + config.request_timeout_s + config.lag_timeout_s + 60
    last_operations = 0
    last_time = time.monotonic()
    rate = 0.0
    while len(collected) < len(plans):
        _collect(results, collected, PROGRESS_PERIOD_S)
        _check_alive(processes, collected)
        now = time.monotonic()
        if now > deadline:
            raise BenchError("the generator did not finish in time")
        if on_progress is None:
            continue
        operations = int(
            sum(progress[p.worker * PROGRESS_FIELDS + FIELD_OPERATIONS] for p in plans)
        )
        errors = int(sum(progress[p.worker * PROGRESS_FIELDS + FIELD_ERRORS] for p in plans))
        if operations != last_operations:
            rate = (operations - last_operations) / max(1e-9, now - last_time)
            last_operations, last_time = operations, now
        elapsed = max(0.0, now - start_at)
        phases = _phases(plans, progress)
        if all(phase >= PHASE_DONE for phase in phases) or elapsed >= total_s:
            label = "finishing"
        elif elapsed < config.warmup_intervals * config.interval_s:
            label = "warm-up"
        else:
            label = "measuring" if any(p >= PHASE_RUNNING for p in phases) else "starting"
        on_progress(Progress(label, elapsed, total_s, operations, errors, rate))


def _drain(
    processes: list[Any], results: Any, collected: list[WorkerResult], deadline_s: float
) -> None:
    while len(collected) < len(processes) and time.monotonic() < deadline_s:
        _collect(results, collected, PROGRESS_PERIOD_S)
        if all(process.exitcode is not None for process in processes):
            _collect(results, collected, 0.5)
            return
