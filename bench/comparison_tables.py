"""The comparison's tables: medians over repetitions, paired ratios, target verdicts.

Every function takes the list of successful runs of ``summary.json`` (one dict
per system, scenario and repetition, as ``run_comparison.summarise`` made
it) and returns Markdown table lines.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

CEILING = "noop"
ONE_NODE = "causalkv-1"
REPLICATED = "causalkv-1x3"
SHARDED = "causalkv-2x3"
GENERATOR_BOUND_PERCENT = 90.0

Runs = list[dict[str, Any]]


def ok_runs(summary: dict[str, Any]) -> Runs:
    return [run for run in summary["runs"] if "failed" not in run]


def systems_in(summary: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for run in summary["runs"]:
        if run["system"] not in seen:
            seen.append(run["system"])
    return seen


def select(runs: Runs, system: str, scenario: str) -> Runs:
    return [r for r in runs if r["system"] == system and r["scenario"] == scenario]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def metric(runs: Runs, pick: Callable[[dict[str, Any]], float | None]) -> float | None:
    values = []
    for run in runs:
        try:
            values.append(pick(run))
        except (KeyError, TypeError):
            continue
    return median(values)


def latency(operation: str, percentile: str) -> Callable[[dict[str, Any]], float | None]:
    """Picks a latency percentile (ms) of ``operation`` from a run; None if it never ran."""

    def pick(run: dict[str, Any]) -> float | None:
        figures = run["operations"][operation]
        return float(figures["latency_ms"][percentile]) if figures["count"] else None

    return pick


def histogram_of(operation: str) -> Callable[[dict[str, Any]], Any]:
    def pick(report: dict[str, Any]) -> Any:
        return report["operations"][operation]["histogram_ns"]

    return pick


def paired_ratio(runs: Runs, system: str, base: str, scenario: str) -> float | None:
    """Median over repetitions of system/base throughput, pairing runs of one repetition."""
    numerator = {r["repetition"]: r["throughput_ops_s"] for r in select(runs, system, scenario)}
    denominator = {r["repetition"]: r["throughput_ops_s"] for r in select(runs, base, scenario)}
    ratios = [numerator[k] / denominator[k] for k in numerator if denominator.get(k)]
    return median(ratios)


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def spread(runs: Runs, pick: Callable[[dict[str, Any]], float]) -> str:
    values = [pick(r) for r in runs]
    if len(values) < 2:
        return ""
    return f" ({min(values):,.0f}-{max(values):,.0f})"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def targets(runs: Runs) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    ratio = paired_ratio(runs, ONE_NODE, CEILING, "A-16")
    rows.append(
        f"| 1 node, workload A, durable writes: ≥ 50 % of the no-op ceiling's requests/s"
        f" | {fmt(None if ratio is None else 100 * ratio, 1, ' %')} of the ceiling"
        f" | {verdict(None if ratio is None else ratio >= 0.5)} |"
    )
    one_client = select(runs, ONE_NODE, "A-1")
    for operation, name in (("read", "reads"), ("update", "durable writes")):
        p50 = metric(one_client, latency(operation, "p50"))
        p99 = metric(one_client, latency(operation, "p99"))
        ok = None if p50 is None or p99 is None else p50 < 1.0 and p99 < 3.0
        rows.append(
            f"| 1 client, {name}: p50 < 1 ms and p99 < 3 ms | p50 {fmt(p50, 3)} ms,"
            f" p99 {fmt(p99, 3)} ms | {verdict(ok)} |"
        )
    ratio = paired_ratio(runs, REPLICATED, ONE_NODE, "A-16")
    rows.append(
        f"| 1 shard x 3 replicas, workload A: ≥ 70 % of one node's throughput"
        f" | {fmt(None if ratio is None else 100 * ratio, 1, ' %')} of one node"
        f" | {verdict(None if ratio is None else ratio >= 0.7)} |"
    )
    replicated = [r for r in select(runs, REPLICATED, "A-16") if r["replication_lag"]["enabled"]]
    lag = metric(replicated, lambda r: r["replication_lag"]["latency_ms"]["p99"])
    bound = metric(replicated, lambda r: r["replication_lag"]["from_ack_ms"]["p99"])
    rows.append(
        f"| 1 shard x 3 replicas: replication lag p99 < 50 ms at that load"
        f" | p99 {fmt(lag, 1)} ms (upper bound incl. the probe's round trip: {fmt(bound, 1)} ms)"
        f" | {verdict(None if lag is None else lag < 50)} |"
    )
    per_writer = [
        r["causal_metadata"]["bytes_per_extra_writer"]
        for r in runs
        if r["system"].startswith("causalkv") and r["causal_metadata"].get("bytes_per_extra_writer")
    ]
    constants = [
        r["causal_metadata"]["single_writer_bytes"]
        for r in runs
        if r["causal_metadata"].get("single_writer_bytes")
    ]
    worst = max(per_writer) if per_writer else None
    writers = max((r["causal_metadata"].get("writers_in_largest") or 0 for r in runs), default=0)
    rows.append(
        f"| causal metadata ≤ 16 bytes per node that accepted writes + a constant"
        f" | {fmt(worst, 1)} B per extra writer (worst run, up to {writers} writers),"
        f" constant {max(constants) if constants else '-'} B (a one-writer token)"
        f" | {verdict(None if worst is None else worst <= 16)} |"
    )
    return rows


def throughput_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    header = "| system | " + " | ".join(f"{s} ops/s" for s in scenarios) + " | A-16 vs ceiling |"
    rows = [header, "|---" * (len(scenarios) + 2) + "|"]
    for system in systems:
        cells = []
        for scenario in scenarios:
            selected = select(runs, system, scenario)
            value = metric(selected, lambda r: r["throughput_ops_s"])
            cells.append(fmt(value, 0) + spread(selected, lambda r: r["throughput_ops_s"]))
        ratio = paired_ratio(runs, system, CEILING, "A-16")
        cells.append(fmt(None if ratio is None else 100 * ratio, 1, " %"))
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return rows


def latency_table(runs: Runs, systems: list[str], scenario: str) -> list[str]:
    rows = [
        "| system | read p50 | read p90 | read p99 | read p99.9 | write p50 | write p90"
        " | write p99 | write p99.9 |",
        "|---" * 9 + "|",
    ]
    for system in systems:
        selected = select(runs, system, scenario)
        if not selected:
            continue
        cells = []
        for operation in ("read", "update"):
            for percentile in ("p50", "p90", "p99", "p99.9"):
                cells.append(
                    fmt(
                        metric(selected, latency(operation, percentile)),
                        3,
                    )
                )
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return rows


def lag_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | write rate (ops/s) | lag p50 ms | lag p90 ms | lag p99 ms"
        " | lag max ms | upper bound p50 / p99 ms | samples | unresolved | probes/s |",
        "|---" * 11 + "|",
    ]
    for system in systems:
        for scenario in scenarios:
            selected = [
                r for r in select(runs, system, scenario) if r["replication_lag"]["enabled"]
            ]
            if not selected:
                continue

            def lag(r: dict[str, Any], key: str, figure: str = "latency_ms") -> float:
                return float(r["replication_lag"][figure][key])

            rows.append(
                f"| {system} | {scenario}"
                f" | {fmt(metric(selected, lambda r: r['operations']['update']['throughput_ops_s']), 0)}"
                f" | {fmt(metric(selected, lambda r: lag(r, 'p50')), 2)}"
                f" | {fmt(metric(selected, lambda r: lag(r, 'p90')), 2)}"
                f" | {fmt(metric(selected, lambda r: lag(r, 'p99')), 2)}"
                f" | {fmt(metric(selected, lambda r: lag(r, 'max')), 2)}"
                f" | {fmt(metric(selected, lambda r: lag(r, 'p50', 'from_ack_ms')), 2)} /"
                f" {fmt(metric(selected, lambda r: lag(r, 'p99', 'from_ack_ms')), 2)}"
                f" | {sum(r['replication_lag']['resolved'] for r in selected)}"
                f" | {sum(r['replication_lag']['unresolved'] for r in selected)}"
                f" | {fmt(metric(selected, lambda r: r['replication_lag']['probes_per_s']), 0)} |"
            )
    return rows


def metadata_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | mean B sent | max B sent | writers in largest token"
        " | one-writer token B | B per extra writer |",
        "|---" * 7 + "|",
    ]
    for system in systems:
        if not system.startswith("causalkv"):
            continue
        for scenario in scenarios:
            selected = select(runs, system, scenario)
            if not selected:
                continue
            meta = [r["causal_metadata"] for r in selected]
            rows.append(
                f"| {system} | {scenario} | {fmt(median(m['mean_bytes'] for m in meta), 1)}"
                f" | {max(m['max_bytes'] for m in meta)}"
                f" | {max((m.get('writers_in_largest') or 0) for m in meta)}"
                f" | {fmt(median(m.get('single_writer_bytes') for m in meta), 0)}"
                f" | {fmt(median(m.get('bytes_per_extra_writer') for m in meta), 1)} |"
            )
    return rows


def health_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | errors (all repetitions) | generator CPU % (max) | load average at start (max) |",
        "|---" * 5 + "|",
    ]
    for system in systems:
        for scenario in scenarios:
            selected = select(runs, system, scenario)
            if not selected:
                continue
            errors: dict[str, int] = {}
            for run in selected:
                for status, count in run["errors"]["by_status"].items():
                    errors[status] = errors.get(status, 0) + count
            error_text = ", ".join(f"{s}: {c}" for s, c in errors.items()) or "0"
            cpu = max(r["generator_cpu_percent"] for r in selected)
            flag = " (generator-bound)" if cpu >= GENERATOR_BOUND_PERCENT else ""
            rows.append(
                f"| {system} | {scenario} | {error_text} | {cpu:.0f}{flag}"
                f" | {max(r.get('load_before', -1) for r in selected):.1f} |"
            )
    return rows


def generator_cost_us(runs: Runs) -> float | None:
    """CPU per request of the generator in its busiest run (per-request cost falls with
    load, as the event loop handles more requests per wake-up, so the busiest run is the
    fairest estimate of what one core can drive)."""
    measured = [r for r in runs if r["generator_cpu_percent"] > 0 and r["throughput_ops_s"] > 0]
    if not measured:
        return None
    busiest = max(measured, key=lambda r: r["throughput_ops_s"])
    return float(1e6 * (busiest["generator_cpu_percent"] / 100) / busiest["throughput_ops_s"])
