"""Terminal output: the live progress line and the result tables (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from causalkv.bench.config import PERCENTILES
from causalkv.bench.report import OPERATIONS, percentile_key
from causalkv.bench.runner import Progress


def progress_line(progress: Progress) -> str:
    """One line: phase, time, operations, current rate, errors."""
    if progress.phase in ("connecting", "preloading"):
        return f"[cyan]{progress.phase}[/cyan] {progress.elapsed_s:5.1f} s"
    errors = f"[red]{progress.errors} errors[/red]" if progress.errors else "0 errors"
    return (
        f"[cyan]{progress.phase:<9}[/cyan] {progress.elapsed_s:5.1f}/{progress.total_s:.0f} s"
        f"  {progress.operations:>10,} ops  {progress.operations_per_s:>9,.0f} ops/s  {errors}"
    )


def render_report(report: dict[str, Any], console: Console) -> None:
    """Print the tables of one report."""
    config = report["config"]
    title = (
        f"{report['label'] or config['protocol']}: workload {config['workload']},"
        f" {config['clients']} clients, {config['keys']:,} keys ({config['distribution']}),"
        f" {config['value_size']} B values, {report['measured_s']:.1f} s measured;"
        " latencies in ms"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("op")
    table.add_column("ops/s", justify="right")
    table.add_column("count", justify="right")
    for percent in PERCENTILES:
        table.add_column(percentile_key(percent), justify="right")
    table.add_column("max", justify="right")
    table.add_column("errors", justify="right")
    for name in OPERATIONS:
        operation = report["operations"][name]
        if not operation["count"]:
            continue
        latency = operation["latency_ms"]
        table.add_row(
            name,
            f"{operation['throughput_ops_s']:,.0f}",
            f"{operation['count']:,}",
            *(f"{latency[percentile_key(p)]:.3f}" for p in PERCENTILES),
            f"{latency['max']:.3f}",
            str(operation["errors"]),
        )
    table.add_row("[bold]total[/bold]", f"[bold]{report['throughput_ops_s']:,.0f}[/bold]")
    console.print(table)
    errors = report["errors"]
    if errors["total"]:
        listed = ", ".join(f"{status}: {count:,}" for status, count in errors["by_status"].items())
        console.print(f"[red]errors by status[/red]: {listed}")
    metadata = report["causal_metadata"]
    line = f"causal metadata sent: mean {metadata['mean_bytes']} B, max {metadata['max_bytes']} B"
    if metadata.get("writers_in_largest"):
        line += (
            f"; largest token {metadata['largest_bytes']} B for {metadata['writers_in_largest']}"
            f" writers ({metadata['single_writer_bytes']} B for one"
        )
        if metadata["bytes_per_extra_writer"] is not None:
            line += f", +{metadata['bytes_per_extra_writer']} B per extra writer"
        line += ")"
    console.print(line)
    lag = report["replication_lag"]
    if lag["enabled"]:
        latency = lag["latency_ms"]
        percentiles = ", ".join(
            f"{percentile_key(p)} {latency[percentile_key(p)]:.2f}" for p in PERCENTILES
        )
        bound = lag["from_ack_ms"]
        console.print(
            f"replication lag (ms, {lag['resolved']} of {lag['samples']} samples resolved,"
            f" {lag['probes_per_s']} probes/s): {percentiles}, max {latency['max']:.2f};"
            f" upper bound from the ack incl. the probe's round trip: p50 {bound['p50']:.2f},"
            f" p99 {bound['p99']:.2f}"
        )
    else:
        console.print(f"replication lag: not measured ({lag['note']})")
    generator = report["generator"]
    console.print(
        f"generator: {generator['processes']} process(es), CPU"
        f" {', '.join(f'{c:.0f}%' for c in generator['cpu_percent'])}"
        + (f" pinned to {generator['cpus']}" if generator["cpus"] else "")
    )
