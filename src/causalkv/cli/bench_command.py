"""``causalkv bench``: a load generator for the sharded dialect (and, through
adapters, etcd and Redis), with YCSB-like workloads and a causal chain one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from causalkv.bench.config import BenchConfig, ConfigError
from causalkv.bench.console import progress_line, render_report
from causalkv.bench.drivers import StoreProtocol
from causalkv.bench.runner import BenchError, Progress, run_benchmark
from causalkv.bench.workloads import Distribution

console = Console(stderr=True)


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def bench(
    target: Annotated[
        list[str],
        typer.Option(
            "--target",
            "-t",
            help="host:port of a node (repeat, or comma-separate); clients spread over them",
        ),
    ],
    workload: Annotated[str, typer.Option("--workload", "-w", help="A, B, C or causal")] = "A",
    protocol: Annotated[
        StoreProtocol, typer.Option(help="What the targets speak")
    ] = StoreProtocol.CAUSALKV,
    clients: Annotated[int, typer.Option("--clients", "-c", help="Concurrent clients")] = 16,
    duration: Annotated[float, typer.Option("--duration", "-d", help="Measured seconds")] = 30.0,
    warmup: Annotated[float, typer.Option(help="Seconds run before measuring")] = 5.0,
    keys: Annotated[int, typer.Option("--keys", "-k", help="Key space, preloaded first")] = 10_000,
    value_size: Annotated[int, typer.Option(help="Bytes per written value")] = 100,
    distribution: Annotated[
        Distribution, typer.Option(help="Key popularity")
    ] = Distribution.UNIFORM,
    zipf_theta: Annotated[float, typer.Option(help="Zipfian skew")] = 0.99,
    preload: Annotated[bool, typer.Option(help="Write every key before measuring")] = True,
    lag_fraction: Annotated[
        float, typer.Option(help="Fraction of writes whose replication lag is sampled (0: off)")
    ] = 0.01,
    lag_rate: Annotated[
        float, typer.Option(help="At most this many lag samples per second")
    ] = 20.0,
    processes: Annotated[int, typer.Option(help="Generator processes")] = 1,
    cpus: Annotated[
        str, typer.Option(help="Pin generator processes to these CPUs, e.g. '0' or '0,1'")
    ] = "",
    interval: Annotated[float, typer.Option(help="Reporting interval in seconds")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the clients' random choices")] = 1,
    label: Annotated[str, typer.Option(help="A name for this run in reports and plots")] = "",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (JSON) here")
    ] = None,
    plot_dir: Annotated[
        Path | None, typer.Option(help="Write PNG plots here (needs matplotlib)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress line and no tables")] = False,
) -> None:
    """Drive TARGETs with a workload and report throughput, latency percentiles,
    errors, causal metadata size and replication lag."""
    try:
        cpu_list = tuple(int(c) for c in cpus.split(",") if c.strip())
    except ValueError as error:
        raise typer.BadParameter("--cpus takes comma-separated CPU numbers") from error
    config = BenchConfig(
        targets=_split(target),
        protocol=protocol,
        workload=workload,
        keys=keys,
        value_size=value_size,
        clients=clients,
        duration_s=duration,
        warmup_s=warmup,
        interval_s=interval,
        distribution=distribution,
        zipf_theta=zipf_theta,
        preload=preload,
        lag_fraction=lag_fraction,
        lag_samples_per_s_max=lag_rate,
        processes=processes,
        cpus=cpu_list,
        seed=seed,
        label=label,
    )
    try:
        config.validate()
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        if quiet:
            report = run_benchmark(config)
        else:
            with Live(Text(""), console=console, refresh_per_second=4, transient=True) as live:

                def show(progress: Progress) -> None:
                    live.update(Text.from_markup(progress_line(progress)))

                report = run_benchmark(config, show)
    except BenchError as error:
        console.print(f"[red]causalkv bench: {error}[/red]")
        raise typer.Exit(1) from error
    if not quiet:
        render_report(report, Console())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
    if plot_dir is not None:
        from causalkv.bench.plots import plot_report

        for path in plot_report(report, plot_dir):
            if not quiet:
                console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
