"""Running seeds: one seed (with its report), or a sweep over many.

``run_seed`` runs one seed and returns its ``SimResult``; ``failure_report``
renders a failing one (the replay command first, then what failed, the
checker's report or the traceback, and the end of the event trace).
``sweep`` runs seeds ``start .. start+count-1`` (in worker processes with
``jobs > 1``; each seed is independent and deterministic, so the results do
not depend on the number of workers) and hands each result to a callback in
seed order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from causalkv.core.replica import Replica
from causalkv.sim.simulation import SimOptions, SimResult, Simulation

TRACE_TAIL_LINES = 60
DETAILS_CHARS_MAX = 6_000


def run_seed(
    options: SimOptions,
    *,
    echo: Callable[[str], None] | None = None,
    history_path: Path | None = None,
    replica_class: type[Replica] | None = None,
) -> SimResult:
    """Run one seed. ``echo`` receives every trace line (verbose mode)."""
    simulation = Simulation(
        options, echo=echo, history_path=history_path, replica_class=replica_class
    )
    return simulation.run()


def failure_report(result: SimResult, trace_lines: int = TRACE_TAIL_LINES) -> str:
    if result.ok:
        return f"seed {result.seed}: ok"
    lines = [
        f"seed {result.seed} FAILED ({result.failure}): {result.message}",
        f"replay: {result.options.replay_command()}",
        f"scenario: {result.scenario}",
    ]
    details = result.details.strip()
    if details:
        if len(details) > DETAILS_CHARS_MAX:
            details = details[:DETAILS_CHARS_MAX] + "\n[...]"
        lines += ["", details]
    if result.trace_tail:
        lines += ["", f"last {min(trace_lines, len(result.trace_tail))} trace lines:"]
        lines += result.trace_tail[-trace_lines:]
    return "\n".join(lines)


def statistics_line(result: SimResult) -> str:
    stats = result.statistics
    return (
        f"{stats.get('operations', 0)} ops ({stats.get('ok', 0)} ok, {stats.get('fail', 0)} fail,"
        f" {stats.get('info', 0)} info), {stats.get('events', 0)} events,"
        f" {stats.get('virtual_s', 0.0):.1f}s virtual, {result.cpu_s:.2f}s cpu,"
        f" digest {result.digest}"
    )


@dataclass
class SweepSummary:
    seeds: int = 0
    failed: list[SimResult] = field(default_factory=list)
    cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _run_options(options: SimOptions) -> SimResult:
    return run_seed(options)


def _results(template: SimOptions, seeds: range, jobs: int) -> Iterator[SimResult]:
    all_options = [template.with_seed(seed) for seed in seeds]
    if jobs <= 1:
        for options in all_options:
            yield run_seed(options)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as executor:
        yield from executor.map(_run_options, all_options, chunksize=2)


def sweep(
    template: SimOptions,
    start: int,
    count: int,
    *,
    jobs: int = 1,
    on_result: Callable[[SimResult], None] | None = None,
) -> SweepSummary:
    """Run ``count`` seeds from ``start`` with ``template``'s other options."""
    summary = SweepSummary()
    for result in _results(template, range(start, start + count), jobs):
        summary.seeds += 1
        summary.cpu_s += result.cpu_s
        if not result.ok:
            summary.failed.append(result)
        if on_result is not None:
            on_result(result)
    return summary
