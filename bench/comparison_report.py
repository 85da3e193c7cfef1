"""Render the comparison's summary as docs/benchmarks.md and its plots."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comparison_tables import (
    GENERATOR_BOUND_PERCENT,
    ONE_NODE,
    REPLICATED,
    SHARDED,
    Runs,
    generator_cost_us,
    health_table,
    histogram_of,
    lag_table,
    latency_table,
    metadata_table,
    metric,
    ok_runs,
    select,
    systems_in,
    targets,
    throughput_table,
    verdict,
)

from causalkv.bench.histogram import Histogram
from causalkv.bench.plots import plot_comparison, plot_grouped_bars, plot_report


def _load_reports(runs: Runs, system: str, scenario: str) -> list[dict[str, Any]]:
    reports = []
    for run in select(runs, system, scenario):
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
    runs = ok_runs(summary)
    systems = systems_in(summary)
    scenarios = [s["name"] for s in summary["scenarios"]]
    present = [s for s in scenarios if any(r["scenario"] == s for r in runs)]
    plots: list[tuple[str, Path]] = []
    directory.mkdir(parents=True, exist_ok=True)
    throughput_scenarios = [s for s in present if s.endswith("-16")]
    if throughput_scenarios:
        values = [
            [
                metric(select(runs, system, scenario), lambda r: r["throughput_ops_s"]) or 0.0
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
                histogram = _pooled(reports, histogram_of(operation))
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
        if histogram.total_count and histogram.maximum > 0:  # one replica: lag is 0
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
            for unused in paths[1:]:  # the per-run percentile plot: the pooled ones say more
                unused.unlink()
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
    runs = ok_runs(summary)
    failed = [r for r in summary["runs"] if "failed" in r]
    systems = systems_in(summary)
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
    loads = [r["load_before"] for r in runs if r.get("load_before", -1) >= 0]
    if loads:
        add(
            f"**Noise.** This machine ({machine['cpus']} CPUs) was shared with other work while"
            f" this ran: the load average before a run (counting the benchmark's own processes)"
            f" was {statistics.median(loads):.1f} in the"
            f" median and up to {max(loads):.1f}. Absolute figures are therefore pessimistic and"
            " spread widely (see the min-max ranges); the ratios between systems, measured side"
            " by side in each repetition, are the more robust result."
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
    lines.extend(targets(runs))
    lines.extend(scale_targets(base / "benchmarks" / "scale.json"))
    add("")
    add(
        "The targets name 64 client connections; on this 2-core machine one core runs the"
        " generator and 16 closed-loop clients already saturate the server's core (more only"
        " add queueing to every latency), so the load scenarios use 16."
        " Memory, resharding, restart and recovery after a partition are measured by"
        " `bench/run_scale.py`: see [benchmarks-scale.md](benchmarks-scale.md)."
    )
    add("")
    add(
        "Where a target is missed, the reasons are structural rather than a single hot spot"
        " (see *Where a node's time goes* below): against the ceiling, a node parses the body"
        " and the token, steps the core and commits to SQLite in a storage thread of the same"
        " process (sharing the GIL), where the no-op server does none of that; a durable write's"
        " latency includes the WAL fsync of this disk; the single-client p99 is bounded by the"
        " machine's scheduling noise (compare the no-op server's own p99 in the latency table);"
        " and a 1 x 3 shard runs its three replicas on the one server core, so each write is"
        " applied three times on it."
    )
    add("")
    add("## Throughput")
    add("")
    lines.extend(throughput_table(runs, systems, [s for s in scenarios if s != "A-1"]))
    add("")
    add("## Latency (ms)")
    add("")
    add("One client, workload A (no queueing: the cost of one request):")
    add("")
    lines.extend(latency_table(runs, systems, "A-1"))
    add("")
    add("16 clients, workload A (at full load, so queueing included):")
    add("")
    lines.extend(latency_table(runs, systems, "A-16"))
    add("")
    add("## Replication lag")
    add("")
    lines.extend(lag_table(runs, systems, scenarios))
    add("")
    add("## Causal metadata")
    add("")
    add(
        "What clients send with each request (`causal-metadata` as JSON bytes). A token holds one"
        " entry per writer (a node incarnation that accepted writes); the per-writer cost is the"
        " growth from a one-writer token."
    )
    add("")
    lines.extend(metadata_table(runs, systems, scenarios))
    add("")
    add("## Errors, generator load and machine noise")
    add("")
    add(
        f"A generator at ≥ {GENERATOR_BOUND_PERCENT:.0f} % CPU is the bottleneck of that run"
        " (flagged). The load average shows how busy the machine was before each run (other"
        " work shares this machine)."
    )
    add("")
    cost = generator_cost_us(runs)
    if cost is not None:
        add(
            f"The generator spent about {cost:.0f} µs of CPU per request in its busiest run"
            f" (roughly {1e6 / cost:,.0f} requests/s for a whole core to itself); its busiest"
            f" run used {max(r['generator_cpu_percent'] for r in runs):.0f} % of a CPU."
        )
        add("")
    lines.extend(health_table(runs, systems, scenarios))
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


def scale_targets(path: Path) -> list[str]:
    """The memory target's row, from ``bench/run_scale.py``'s figures (if present)."""
    if not path.exists():
        return []
    figures = json.loads(path.read_text())
    by_dependencies = {
        int(k): v for k, v in figures.get("memory_bytes_by_dependencies", {}).items()
    }
    if not by_dependencies:
        return []
    keys = figures.get("memory_keys", 0)
    measured = ", ".join(f"{b} B with {d} dep(s)" for d, b in sorted(by_dependencies.items()))
    within = [d for d, b in sorted(by_dependencies.items()) if b < 300]
    if len(within) == len(by_dependencies):
        verdict_text = verdict(True)
    elif within:
        verdict_text = f"**met** up to {max(within)} dependencies per version, **missed** beyond"
    else:
        verdict_text = verdict(False)
    rows = [
        f"| memory: < 300 B overhead per key at 1,000,000 keys ({keys:,} measured,"
        f" {figures.get('created', '?')}) | {measured} | {verdict_text} |"
    ]
    restart_s = figures.get("restart_median_s")
    if restart_s is not None:
        rows.append(
            f"| restart of a node holding 1,000,000 keys: < 10 s ({figures['restart_keys']:,}"
            f" measured) | median {restart_s:.2f} s to serving | "
            f"{verdict(restart_s < 10)} |"
        )
    reshard_s = figures.get("reshard_s")
    if reshard_s is not None:
        rows.append(
            f"| reshard 100,000 keys from 2 to 3 shards: < 10 s ({figures['reshard_keys']:,}"
            f" measured, {figures.get('reshard_missing', '?')} missing afterwards)"
            f" | {reshard_s:.2f} s | {verdict(reshard_s < 10)} |"
        )
    heal_p99 = figures.get("heal_p99_ms")
    if heal_p99 is not None:
        rows.append(
            f"| heal → every replica converged, 1,000 keys written during a partition: p99 < 1 s"
            f" ({figures['heal_runs']} runs, real test hosts) | p50 {figures['heal_p50_ms']:.0f} ms,"
            f" p99 {heal_p99:.0f} ms | {verdict(heal_p99 < 1000)} |"
        )
    ack_p99 = figures.get("ack_p99_ms")
    if ack_p99 is not None:
        rows.append(
            f"| write → every replica, healthy network: p99 < 50 ms ({figures['ack_runs']} writes)"
            f" | p50 {figures['ack_p50_ms']:.1f} ms, p99 {ack_p99:.1f} ms"
            f" | {verdict(ack_p99 < 50)} |"
        )
    return rows
