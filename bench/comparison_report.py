"""Render the comparison's summary as docs/benchmarks.md and its plots."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from causalkv.bench.histogram import Histogram
from causalkv.bench.plots import plot_comparison, plot_grouped_bars, plot_report

CEILING = "noop"
ONE_NODE = "causalkv-1"
REPLICATED = "causalkv-1x3"
SHARDED = "causalkv-2x3"
GENERATOR_BOUND_PERCENT = 90.0

Runs = list[dict[str, Any]]


def _ok_runs(summary: dict[str, Any]) -> Runs:
    return [run for run in summary["runs"] if "failed" not in run]


def _systems(summary: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for run in summary["runs"]:
        if run["system"] not in seen:
            seen.append(run["system"])
    return seen


def _select(runs: Runs, system: str, scenario: str) -> Runs:
    return [r for r in runs if r["system"] == system and r["scenario"] == scenario]


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _metric(runs: Runs, pick: Callable[[dict[str, Any]], float | None]) -> float | None:
    values = []
    for run in runs:
        try:
            values.append(pick(run))
        except (KeyError, TypeError):
            continue
    return _median(values)


def _latency(operation: str, percentile: str) -> Callable[[dict[str, Any]], float | None]:
    """Picks a latency percentile (ms) of ``operation`` from a run; None if it never ran."""

    def pick(run: dict[str, Any]) -> float | None:
        figures = run["operations"][operation]
        return float(figures["latency_ms"][percentile]) if figures["count"] else None

    return pick


def _histogram_of(operation: str) -> Callable[[dict[str, Any]], Any]:
    def pick(report: dict[str, Any]) -> Any:
        return report["operations"][operation]["histogram_ns"]

    return pick


def _paired_ratio(runs: Runs, system: str, base: str, scenario: str) -> float | None:
    """Median over repetitions of system/base throughput, pairing runs of one repetition."""
    numerator = {r["repetition"]: r["throughput_ops_s"] for r in _select(runs, system, scenario)}
    denominator = {r["repetition"]: r["throughput_ops_s"] for r in _select(runs, base, scenario)}
    ratios = [numerator[k] / denominator[k] for k in numerator if denominator.get(k)]
    return _median(ratios)


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _spread(runs: Runs, pick: Callable[[dict[str, Any]], float]) -> str:
    values = [pick(r) for r in runs]
    if len(values) < 2:
        return ""
    return f" ({min(values):,.0f}-{max(values):,.0f})"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def _targets(runs: Runs) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]
    ratio = _paired_ratio(runs, ONE_NODE, CEILING, "A-16")
    rows.append(
        f"| 1 node, workload A, durable writes: ≥ 50 % of the no-op ceiling's requests/s"
        f" | {_fmt(None if ratio is None else 100 * ratio, 1, ' %')} of the ceiling"
        f" | {_verdict(None if ratio is None else ratio >= 0.5)} |"
    )
    one_client = _select(runs, ONE_NODE, "A-1")
    for operation, name in (("read", "reads"), ("update", "durable writes")):
        p50 = _metric(one_client, _latency(operation, "p50"))
        p99 = _metric(one_client, _latency(operation, "p99"))
        ok = None if p50 is None or p99 is None else p50 < 1.0 and p99 < 3.0
        rows.append(
            f"| 1 client, {name}: p50 < 1 ms and p99 < 3 ms | p50 {_fmt(p50, 3)} ms,"
            f" p99 {_fmt(p99, 3)} ms | {_verdict(ok)} |"
        )
    ratio = _paired_ratio(runs, REPLICATED, ONE_NODE, "A-16")
    rows.append(
        f"| 1 shard x 3 replicas, workload A: ≥ 70 % of one node's throughput"
        f" | {_fmt(None if ratio is None else 100 * ratio, 1, ' %')} of one node"
        f" | {_verdict(None if ratio is None else ratio >= 0.7)} |"
    )
    replicated = [r for r in _select(runs, REPLICATED, "A-16") if r["replication_lag"]["enabled"]]
    lag = _metric(replicated, lambda r: r["replication_lag"]["latency_ms"]["p99"])
    bound = _metric(replicated, lambda r: r["replication_lag"]["from_ack_ms"]["p99"])
    rows.append(
        f"| 1 shard x 3 replicas: replication lag p99 < 50 ms at that load"
        f" | p99 {_fmt(lag, 1)} ms (upper bound incl. the probe's round trip: {_fmt(bound, 1)} ms)"
        f" | {_verdict(None if lag is None else lag < 50)} |"
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
        f" | {_fmt(worst, 1)} B per extra writer (worst run, up to {writers} writers),"
        f" constant {max(constants) if constants else '-'} B (a one-writer token)"
        f" | {_verdict(None if worst is None else worst <= 16)} |"
    )
    return rows


def _throughput_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    header = "| system | " + " | ".join(f"{s} ops/s" for s in scenarios) + " | A-16 vs ceiling |"
    rows = [header, "|---" * (len(scenarios) + 2) + "|"]
    for system in systems:
        cells = []
        for scenario in scenarios:
            selected = _select(runs, system, scenario)
            value = _metric(selected, lambda r: r["throughput_ops_s"])
            cells.append(_fmt(value, 0) + _spread(selected, lambda r: r["throughput_ops_s"]))
        ratio = _paired_ratio(runs, system, CEILING, "A-16")
        cells.append(_fmt(None if ratio is None else 100 * ratio, 1, " %"))
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return rows


def _latency_table(runs: Runs, systems: list[str], scenario: str) -> list[str]:
    rows = [
        "| system | read p50 | read p90 | read p99 | read p99.9 | write p50 | write p90"
        " | write p99 | write p99.9 |",
        "|---" * 9 + "|",
    ]
    for system in systems:
        selected = _select(runs, system, scenario)
        if not selected:
            continue
        cells = []
        for operation in ("read", "update"):
            for percentile in ("p50", "p90", "p99", "p99.9"):
                cells.append(
                    _fmt(
                        _metric(selected, _latency(operation, percentile)),
                        3,
                    )
                )
        rows.append(f"| {system} | " + " | ".join(cells) + " |")
    return rows


def _lag_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | write rate (ops/s) | lag p50 ms | lag p90 ms | lag p99 ms"
        " | lag max ms | upper bound p50 / p99 ms | samples | unresolved | probes/s |",
        "|---" * 11 + "|",
    ]
    for system in systems:
        for scenario in scenarios:
            selected = [
                r for r in _select(runs, system, scenario) if r["replication_lag"]["enabled"]
            ]
            if not selected:
                continue

            def lag(r: dict[str, Any], key: str, figure: str = "latency_ms") -> float:
                return float(r["replication_lag"][figure][key])

            rows.append(
                f"| {system} | {scenario}"
                f" | {_fmt(_metric(selected, lambda r: r['operations']['update']['throughput_ops_s']), 0)}"
                f" | {_fmt(_metric(selected, lambda r: lag(r, 'p50')), 2)}"
                f" | {_fmt(_metric(selected, lambda r: lag(r, 'p90')), 2)}"
                f" | {_fmt(_metric(selected, lambda r: lag(r, 'p99')), 2)}"
                f" | {_fmt(_metric(selected, lambda r: lag(r, 'max')), 2)}"
                f" | {_fmt(_metric(selected, lambda r: lag(r, 'p50', 'from_ack_ms')), 2)} /"
                f" {_fmt(_metric(selected, lambda r: lag(r, 'p99', 'from_ack_ms')), 2)}"
                f" | {sum(r['replication_lag']['resolved'] for r in selected)}"
                f" | {sum(r['replication_lag']['unresolved'] for r in selected)}"
                f" | {_fmt(_metric(selected, lambda r: r['replication_lag']['probes_per_s']), 0)} |"
            )
    return rows


def _metadata_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | mean B sent | max B sent | writers in largest token"
        " | one-writer token B | B per extra writer |",
        "|---" * 7 + "|",
    ]
    for system in systems:
        if not system.startswith("causalkv"):
            continue
        for scenario in scenarios:
            selected = _select(runs, system, scenario)
            if not selected:
                continue
            meta = [r["causal_metadata"] for r in selected]
            rows.append(
                f"| {system} | {scenario} | {_fmt(_median(m['mean_bytes'] for m in meta), 1)}"
                f" | {max(m['max_bytes'] for m in meta)}"
                f" | {max((m.get('writers_in_largest') or 0) for m in meta)}"
                f" | {_fmt(_median(m.get('single_writer_bytes') for m in meta), 0)}"
                f" | {_fmt(_median(m.get('bytes_per_extra_writer') for m in meta), 1)} |"
            )
    return rows


def _health_table(runs: Runs, systems: list[str], scenarios: list[str]) -> list[str]:
    rows = [
        "| system | scenario | errors (all repetitions) | generator CPU % (max) | load average at start (max) |",
        "|---" * 5 + "|",
    ]
    for system in systems:
        for scenario in scenarios:
            selected = _select(runs, system, scenario)
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


def _generator_cost_us(runs: Runs) -> float | None:
    costs = [
        1e6 * (r["generator_cpu_percent"] / 100) / r["throughput_ops_s"]
        for r in runs
        if r["throughput_ops_s"] > 1000 and r["generator_cpu_percent"] > 0
    ]
    return _median(costs)


def _load_reports(runs: Runs, system: str, scenario: str) -> list[dict[str, Any]]:
    reports = []
    for run in _select(runs, system, scenario):
        path = Path(run.get("report_path", ""))
        if path.is_file():
            reports.append(json.loads(path.read_text()))
    return reports


def _pooled(reports: list[dict[str, Any]], pick: Callable[[dict[str, Any]], Any]) -> Histogram:
    histogram = Histogram()
    for report in reports:
        sparse = pick(report)
        if sparse:
            histogram.merge(Histogram.from_sparse(sparse))
    return histogram


def write_plots(summary: dict[str, Any], directory: Path) -> list[tuple[str, Path]]:
    """Write the comparison's PNGs; returns (caption, path) pairs."""
    runs = _ok_runs(summary)
    systems = _systems(summary)
    scenarios = [s["name"] for s in summary["scenarios"]]
    present = [s for s in scenarios if any(r["scenario"] == s for r in runs)]
    plots: list[tuple[str, Path]] = []
    directory.mkdir(parents=True, exist_ok=True)
    throughput_scenarios = [s for s in present if s.endswith("-16")]
    if throughput_scenarios:
        values = [
            [
                _metric(_select(runs, system, scenario), lambda r: r["throughput_ops_s"]) or 0.0
                for scenario in throughput_scenarios
            ]
            for system in systems
        ]
        path = plot_grouped_bars(
            systems,
            throughput_scenarios,
            values,
            directory / "throughput.png",
            "Throughput, 16 clients (median of repetitions)",
            "operations/s",
        )
        plots.append(("Throughput per system and workload (16 clients)", path))
    for scenario, caption in (("A-1", "one client"), ("A-16", "16 clients")):
        for operation, label in (("read", "reads"), ("update", "writes")):
            curves = []
            for system in systems:
                reports = _load_reports(runs, system, scenario)
                histogram = _pooled(reports, _histogram_of(operation))
                if histogram.total_count:
                    curves.append((system, histogram))
            if curves:
                path = plot_comparison(
                    curves,
                    directory / f"latency-{scenario}-{operation}.png",
                    f"Workload A, {caption}: latency of {label} (all repetitions pooled)",
                )
                plots.append((f"Latency by percentile, workload A, {caption}, {label}", path))
    curves = []
    for system in systems:
        reports = _load_reports(runs, system, "A-16")
        histogram = _pooled(
            reports,
            lambda r: (
                r["replication_lag"].get("histogram_ns")
                if r["replication_lag"]["enabled"]
                else None
            ),
        )
        if histogram.total_count:
            curves.append((system, histogram))
    if curves:
        path = plot_comparison(
            curves,
            directory / "replication-lag-A-16.png",
            "Replication lag, workload A, 16 clients",
        )
        plots.append(("Replication lag by percentile (workload A, 16 clients)", path))
    for system in (ONE_NODE, REPLICATED, SHARDED):
        reports = _load_reports(runs, system, "A-16")
        if reports:
            paths = plot_report(reports[0], directory, name=f"timeline-{system}-A-16")
            plots.append((f"{system}, workload A, 16 clients, repetition 1: over time", paths[0]))
    return plots


def _profile_section(profile: dict[str, Any]) -> list[str]:
    lines = [
        f"py-spy (`--threads --native`) sampled one causalkv node (1 node, sqlite storage)"
        f" under workload A with 16 clients ({profile['throughput_ops_s']:,.0f} ops/s while"
        f" profiled; sampling slows the node a little): {profile['all_samples']} samples, of"
        f" which {profile['cpu_samples']} on CPU. Where each thread's time went (% of all"
        " samples; *GIL wait*: waiting to take the GIL, held by the other thread or not yet"
        " handed over because the OS has not scheduled the waiter):",
        "",
        "| thread | " + " | ".join(profile["classes"]) + " |",
        "|---" * (len(profile["classes"]) + 1) + "|",
    ]
    for thread, shares in profile["threads"].items():
        lines.append(
            f"| {thread} | " + " | ".join(f"{shares[k]} %" for k in profile["classes"]) + " |"
        )
    lines += [
        "",
        "Hot spots by self CPU time (innermost Python frame; C code called from it counts"
        " towards it), % of CPU samples:",
        "",
        "| self % | function |",
        "|---|---|",
    ]
    lines += [f"| {share} | `{frame}` |" for share, frame in profile["self_python"]]
    lines += [
        "",
        "By inclusive CPU time (a function with everything it calls):",
        "",
        "| inclusive % | function |",
        "|---|---|",
    ]
    lines += [f"| {share} | `{frame}` |" for share, frame in profile["inclusive"]]
    lines += [
        "",
        f"Profiled with `{profile['command']}` while running `{profile['bench_command']}`;"
        " summarise a raw profile with `.venv/bin/python bench/profile_summary.py FILE`.",
    ]
    return lines


def render_document(summary: dict[str, Any], plots: list[tuple[str, Path]], base: Path) -> str:
    """docs/benchmarks.md from the summary."""
    runs = _ok_runs(summary)
    failed = [r for r in summary["runs"] if "failed" in r]
    systems = _systems(summary)
    scenarios = [
        s["name"] for s in summary["scenarios"] if any(r["scenario"] == s["name"] for r in runs)
    ]
    settings = summary["settings"]
    machine = summary["machine"]
    pinning = summary["pinning"]
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add(
        "Generated by `bench/run_comparison.py` — do not edit by hand; re-run the script"
        " (or `--from-results DIR` to re-render). "
        + ("**This is a `--quick` smoke run, not a measurement.**" if settings["quick"] else "")
    )
    add("")
    add(
        f"Measured {summary['created']} on {machine['cpu_model']} ({machine['cpus']} CPUs),"
        f" Linux {machine['kernel']}, Python {machine['python']}, commit {machine['commit']}"
        " (plus the working tree's uncommitted changes at the time)."
        f" The whole comparison took {summary['elapsed_s'] / 60:.0f} minutes."
    )
    add("")
    add("## How it was measured")
    add("")
    pin_text = (
        f"The generator ran pinned to CPU {pinning['generator_cpus']} and every server process"
        f" (all nodes, members and the no-op server) to CPU {pinning['server_cpus']}"
        if pinning["generator_cpus"]
        else "Nothing was pinned"
    )
    add(
        f"- {pin_text}: on a 2-core machine that gives the system under test one core and the load"
        " generator the other, so the generator does not steal the server's CPU, and a"
        " multi-node cluster shares one core (its replication costs show up as lost throughput)."
    )
    if settings.get("nice"):
        add(
            f"- Generator and servers ran at nice {settings['nice']}: the machine is shared with"
            " other work (see the load averages below), and a higher priority keeps that work"
            " from dominating the figures. Every system got the same treatment."
        )
    add(
        "- Generator: `causalkv bench`, one process, asyncio on uvloop, one raw keep-alive"
        " HTTP/1.1 (or RESP) connection and one causal session per client, closed loop"
        " (each client sends its next request when the previous answer arrived)."
        " Latency is measured per request with `perf_counter_ns` and kept in a log-linear"
        " histogram (relative error ≤ 0.4 %)."
    )
    add(
        f"- Every run: {settings['keys']:,} keys preloaded (once per fresh system start),"
        f" {settings['value_size']}-byte values, uniform key choice, {settings['warmup_s']:g} s"
        f" warm-up then {settings['duration_s']:g} s measured; {settings['repetitions']}"
        " repetition(s), interleaved (every system's repetition 1, then every system's"
        " repetition 2, ...). Tables show medians over repetitions (with min-max of throughput"
        " in parentheses); ratios are medians of per-repetition ratios of runs made side by side."
    )
    add(
        f"- Replication lag: for {100 * settings['lag_fraction']:g} % of acknowledged writes (at"
        f" most {settings['lag_rate']:g}/s) the generator polls every replica of the key's shard"
        " with a fresh session (`{}` metadata, so no causal wait) until the value shows"
        " (polling backs off to 10 % of the elapsed time, at least 1 ms). *Lag* is the time"
        " between the first and the last replica showing the write to probes sent at the same"
        " moment (the first is normally the replica that accepted it), so the probes' own"
        " queueing cancels out; the *upper bound* is from the writer's acknowledgement to the"
        " last replica's positive answer, probe round trip included. etcd is"
        " polled with serializable reads of each member."
    )
    add("- Scenarios:")
    for scenario in summary["scenarios"]:
        add(
            f"  - `{scenario['name']}`: workload {scenario['workload']}, {scenario['clients']}"
            f" client(s) — {scenario['purpose']}."
        )
    add("- Systems:")
    for name, description in summary["systems"].items():
        add(f"  - `{name}`: {description}.")
    add("")
    add("## Targets")
    add("")
    lines.extend(_targets(runs))
    add("")
    add("## Throughput")
    add("")
    lines.extend(_throughput_table(runs, systems, [s for s in scenarios if s != "A-1"]))
    add("")
    add("## Latency (ms)")
    add("")
    add("One client, workload A (no queueing: the cost of one request):")
    add("")
    lines.extend(_latency_table(runs, systems, "A-1"))
    add("")
    add("16 clients, workload A (at full load, so queueing included):")
    add("")
    lines.extend(_latency_table(runs, systems, "A-16"))
    add("")
    add("## Replication lag")
    add("")
    lines.extend(_lag_table(runs, systems, scenarios))
    add("")
    add("## Causal metadata")
    add("")
    add(
        "What clients send with each request (`causal-metadata` as JSON bytes). A token holds one"
        " entry per writer (a node incarnation that accepted writes); the per-writer cost is the"
        " growth from a one-writer token."
    )
    add("")
    lines.extend(_metadata_table(runs, systems, scenarios))
    add("")
    add("## Errors, generator load and machine noise")
    add("")
    add(
        f"A generator at ≥ {GENERATOR_BOUND_PERCENT:.0f} % CPU is the bottleneck of that run"
        " (flagged). The load average shows how busy the machine was before each run (other"
        " work shares this machine)."
    )
    add("")
    cost = _generator_cost_us(runs)
    if cost is not None:
        add(
            f"The generator spends about {cost:.0f} µs of CPU per request (median over the runs"
            f" above 1,000 ops/s), so one core drives about {1e6 / cost:,.0f} requests/s before"
            " it becomes the bottleneck."
        )
        add("")
    lines.extend(_health_table(runs, systems, scenarios))
    if failed:
        add("")
        add("Runs that failed:")
        add("")
        for run in failed:
            add(f"- {run['system']} {run['scenario']} r{run['repetition']}: {run['failed']}")
    add("")
    if plots:
        add("## Plots")
        add("")
        for caption, path in plots:
            add(f"![{caption}]({os.path.relpath(path, base)})")
            add("")
    profile = summary.get("profile")
    add("## Where a node's time goes")
    add("")
    if profile:
        lines.extend(_profile_section(profile))
    else:
        add("No profile was taken in this run (py-spy missing, or `--no-profile`).")
    add("")
    add("## Reproduce")
    add("")
    add("Everything above, in one go (about the same duration):")
    add("")
    add("```sh")
    add(f".venv/bin/python bench/run_comparison.py {summary['arguments']}".rstrip())
    add("```")
    add("")
    add(
        "One figure by hand: start the system, pin its processes to the server CPU"
        " (`taskset -a -cp 1 PID`), then run the bench command (it pins itself with `--cpus`)."
        " Ports are those of this run. System start commands:"
    )
    add("")
    add("```sh")
    for name, commands in summary["system_commands"].items():
        add(f"# {name}")
        lines.extend(commands)
    add("```")
    add("")
    add("<details><summary>Every benchmark command of this run</summary>")
    add("")
    add("```sh")
    for run in summary["runs"]:
        add(f"# {run['system']} {run['scenario']} repetition {run['repetition']}")
        add(run["command"])
    add("```")
    add("")
    add("</details>")
    add("")
    return "\n".join(lines)
