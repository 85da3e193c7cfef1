"""Run the benchmark comparison on this machine and write docs/benchmarks.md.

    .venv/bin/python bench/run_comparison.py [--quick] [--repetitions N] [--duration S]

Systems, each started fresh per repetition, driven by the same generator
(``causalkv bench``) with the same workloads and latency accounting:

- ``noop``: the ceiling, a no-op ASGI app on the node's server stack;
- ``causalkv-1``, ``causalkv-1x3``, ``causalkv-2x3``: 1 node; 1 shard x 3
  replicas; 2 shards x 3 replicas (durable sqlite storage, the default);
- ``etcd-3`` (3 members, Raft) and ``redis`` (one in-memory server).

Repetitions are interleaved (repetition 1 of every system, then 2, ...), so
slow drift of a noisy machine hits every system alike; figures are medians
over repetitions, and ratios are medians of the per-repetition ratios of
runs made side by side. On a machine with 2+ CPUs the generator is pinned to
CPU 0 and every server process to the other CPUs.

``--from-results DIR`` re-renders the document from saved results without
running anything. Every run's exact command is printed and written to the
document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comparison_report import render_document, write_plots
from systems import (
    CausalKvSystem,
    EtcdSystem,
    NoopSystem,
    RedisSystem,
    System,
    pin,
)

from causalkv.bench.config import BenchConfig
from causalkv.bench.runner import BenchError, Progress, run_benchmark

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: str
    clients: int
    lag: bool
    purpose: str


SCENARIOS = (
    Scenario("A-16", "A", 16, True, "throughput, latency under load, replication lag"),
    Scenario("A-1", "A", 1, False, "latency of one client (no queueing)"),
    Scenario("B-16", "B", 16, True, "read-mostly throughput"),
    Scenario("C-16", "C", 16, False, "read-only throughput"),
    Scenario("causal-16", "causal", 16, True, "causal chains: each write depends on a read"),
)


def make_systems(data_root: Path, names: list[str] | None) -> list[System]:
    systems: list[System] = [
        NoopSystem(data_root / "noop"),
        CausalKvSystem("causalkv-1", 1, 1, data_root / "causalkv-1"),
        CausalKvSystem("causalkv-1x3", 3, 1, data_root / "causalkv-1x3"),
        CausalKvSystem("causalkv-2x3", 6, 2, data_root / "causalkv-2x3"),
        EtcdSystem(data_root / "etcd-3"),
        RedisSystem(data_root / "redis"),
    ]
    if names:
        unknown = set(names) - {s.name for s in systems}
        if unknown:
            raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s.name in names]
    return systems


def bench_command(config: BenchConfig, json_path: Path) -> str:
    """The ``causalkv bench`` command line that runs exactly ``config``."""
    argv = [
        ".venv/bin/causalkv",
        "bench",
        "--target",
        ",".join(config.targets),
        "--protocol",
        config.protocol.value,
        "--workload",
        config.workload,
        "--clients",
        str(config.clients),
        "--duration",
        f"{config.duration_s:g}",
        "--warmup",
        f"{config.warmup_s:g}",
        "--keys",
        str(config.keys),
        "--value-size",
        str(config.value_size),
        "--lag-fraction",
        f"{config.lag_fraction:g}",
        "--lag-rate",
        f"{config.lag_samples_per_s_max:g}",
        "--seed",
        str(config.seed),
        "--label",
        config.label,
        "--json",
        str(json_path),
    ]
    if not config.preload:
        argv.append("--no-preload")
    if config.cpus:
        argv += ["--cpus", ",".join(map(str, config.cpus))]
    return shlex.join(argv)


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the document needs from one run (the full report stays on disk)."""
    operations = {
        name: {
            "count": op["count"],
            "throughput_ops_s": op["throughput_ops_s"],
            "latency_ms": op["latency_ms"],
            "errors": op["errors"],
        }
        for name, op in report["operations"].items()
    }
    lag = report["replication_lag"]
    return {
        "throughput_ops_s": report["throughput_ops_s"],
        "operations": operations,
        "errors": report["errors"],
        "causal_metadata": report["causal_metadata"],
        "replication_lag": {k: v for k, v in lag.items() if k != "histogram_ns"},
        "generator_cpu_percent": max(report["generator"]["cpu_percent"], default=0.0),
        "measured_s": report["measured_s"],
    }


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


class Comparison:
    """Runs every (repetition, system, scenario) and keeps what it measured."""

    def __init__(self, arguments: argparse.Namespace) -> None:
        self.arguments = arguments
        self.results_dir: Path = arguments.results_dir
        self.results_dir.mkdir(parents=True, exist_ok=True)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.pinning = len(cpus) >= 2 and not arguments.no_pin
        self.generator_cpus = {cpus[0]} if self.pinning else set()
        self.server_cpus = set(cpus[1:]) if self.pinning else set()
        self.runs: list[dict[str, Any]] = []
        self.system_commands: dict[str, list[str]] = {}
        self.system_descriptions: dict[str, str] = {}

    def config_for(
        self, system: System, scenario: Scenario, preload: bool, repetition: int
    ) -> BenchConfig:
        arguments = self.arguments
        return BenchConfig(
            targets=system.targets,
            protocol=system.protocol,
            workload=scenario.workload,
            keys=arguments.keys,
            value_size=arguments.value_size,
            clients=scenario.clients,
            duration_s=arguments.duration,
            warmup_s=arguments.warmup,
            preload=preload,
            lag_fraction=arguments.lag_fraction if scenario.lag else 0.0,
            lag_samples_per_s_max=arguments.lag_rate,
            cpus=tuple(sorted(self.generator_cpus)),
            seed=repetition,
            label=f"{system.name}-{scenario.name}",
        ).validate()

    def run(self, systems: list[System], scenarios: list[Scenario]) -> None:
        if self.generator_cpus:
            os.sched_setaffinity(0, self.generator_cpus)
        if self.arguments.nice:
            # inherited by every process started from here: workers, nodes, etcd, redis
            os.setpriority(os.PRIO_PROCESS, 0, self.arguments.nice)
        for repetition in range(1, self.arguments.repetitions + 1):
            for system in systems:
                self._run_system(system, scenarios, repetition)

    def _run_system(self, system: System, scenarios: list[Scenario], repetition: int) -> None:
        print(f"\n== repetition {repetition}: starting {system.name} ({system.description})")
        system.start()
        try:
            pin(system.pids(), self.server_cpus)
            self.system_commands[system.name] = list(system.commands)
            self.system_descriptions[system.name] = system.description
            for position, scenario in enumerate(scenarios):
                self._run_one(system, scenario, repetition, preload=position == 0)
        finally:
            system.stop()
            shutil.rmtree(system.data_dir, ignore_errors=True)  # etcd alone preallocates 64 MB

    def _run_one(self, system: System, scenario: Scenario, repetition: int, preload: bool) -> None:
        config = self.config_for(system, scenario, preload, repetition)
        path = self.results_dir / f"{system.name}--{scenario.name}--r{repetition}.json"
        command = bench_command(config, path)
        print(f"$ {command}", flush=True)
        load_before = load_average()
        started = time.monotonic()
        try:
            report = run_benchmark(config)
        except BenchError as error:
            print(f"   FAILED: {error}", flush=True)
            self.runs.append(
                {
                    "system": system.name,
                    "scenario": scenario.name,
                    "repetition": repetition,
                    "command": command,
                    "failed": str(error),
                }
            )
            return
        path.write_text(json.dumps(report) + "\n")
        summary = summarise(report)
        read = summary["operations"]["read"]["latency_ms"]
        update = summary["operations"]["update"]["latency_ms"]
        lag = summary["replication_lag"]
        lag_text = f", lag p99 {lag['latency_ms']['p99']:.1f} ms" if lag.get("enabled") else ""
        print(
            f"   {summary['throughput_ops_s']:>9,.0f} ops/s  read p50/p99 {read['p50']:.2f}/"
            f"{read['p99']:.2f} ms  update p50/p99 {update['p50']:.2f}/{update['p99']:.2f} ms"
            f"{lag_text}  errors {summary['errors']['total']}  generator CPU"
            f" {summary['generator_cpu_percent']:.0f}%  ({time.monotonic() - started:.0f} s,"
            f" load {load_before:.1f})",
            flush=True,
        )
        self.runs.append(
            {
                "system": system.name,
                "scenario": scenario.name,
                "repetition": repetition,
                "command": command,
                "report_path": str(path),
                "load_before": load_before,
                "load_after": load_average(),
                **summary,
            }
        )

    def profile(self, duration_s: float) -> dict[str, Any] | None:
        """py-spy a causalkv node under workload A; returns the hot spots, if py-spy runs."""
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if py_spy is None:
            print("py-spy not installed: no profile")
            return None
        system = CausalKvSystem("causalkv-1", 1, 1, self.results_dir / "profile-node")
        raw = self.results_dir / "profile-causalkv-1-A.raw"
        print("\n== profile: py-spy on one causalkv node under workload A (16 clients)")
        system.start()
        try:
            pin(system.pids(), self.server_cpus)
            pid = system.pids()[0]
            spy_argv = [
                py_spy,
                "record",
                "--threads",
                "--native",
                "--pid",
                str(pid),
                "--duration",
                str(int(duration_s)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(raw),
            ]
            spy: list[subprocess.Popen[bytes]] = []

            def start_profiler(progress: Progress) -> None:
                if progress.phase == "measuring" and not spy:
                    spy.append(
                        subprocess.Popen(
                            spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                        )
                    )
                    pin([spy[0].pid], self.generator_cpus)

            scenario = SCENARIOS[0]
            config = dataclasses.replace(
                self.config_for(system, scenario, True, 1),
                duration_s=duration_s + 4,
                label="profiled-causalkv-1-A-16",
            )
            command = bench_command(config, self.results_dir / "profiled.json")
            report = run_benchmark(config, start_profiler)
            if not spy:
                return None
            _, errors = spy[0].communicate(timeout=60)
            if spy[0].returncode != 0 or not raw.exists():
                print(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")
                return None
        finally:
            system.stop()
            shutil.rmtree(system.data_dir, ignore_errors=True)
        from profile_summary import CLASSES, hot_spots

        spots = hot_spots(raw, top=15)
        spots["classes"] = list(CLASSES)
        spots["command"] = shlex.join(spy_argv)
        spots["bench_command"] = command
        spots["throughput_ops_s"] = report["throughput_ops_s"]
        return spots

    def summary(self, started_s: float, profile: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "elapsed_s": round(time.monotonic() - started_s, 1),
            "arguments": " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "settings": {
                "duration_s": self.arguments.duration,
                "warmup_s": self.arguments.warmup,
                "repetitions": self.arguments.repetitions,
                "keys": self.arguments.keys,
                "value_size": self.arguments.value_size,
                "lag_fraction": self.arguments.lag_fraction,
                "lag_rate": self.arguments.lag_rate,
                "quick": self.arguments.quick,
                "nice": self.arguments.nice,
            },
            "machine": machine_description(),
            "pinning": {
                "generator_cpus": sorted(self.generator_cpus),
                "server_cpus": sorted(self.server_cpus),
            },
            "scenarios": [dataclasses.asdict(s) for s in SCENARIOS],
            "systems": self.system_descriptions,
            "system_commands": self.system_commands,
            "runs": self.runs,
            "profile": profile,
        }


def machine_description() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = "unknown"
    try:  # read the checked-out commit from .git without running git
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = ROOT / ".git" / head[5:]
            commit = ref.read_text().strip() if ref.exists() else head[5:]
        else:
            commit = head
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "commit": commit[:12],
        "load_average_at_start": load_average(),
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: short runs, 1 repetition")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--lag-fraction", type=float, default=0.01)
    parser.add_argument("--lag-rate", type=float, default=20.0)
    parser.add_argument("--systems", default="", help="comma-separated subset of the systems")
    parser.add_argument("--scenarios", default="", help="comma-separated subset of the scenarios")
    parser.add_argument("--no-pin", action="store_true", help="do not pin generator and servers")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run generator and servers at this nice value (e.g. -10 on a shared machine; root)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--profile-duration", type=float, default=10.0)
    parser.add_argument(
        "--results-dir", type=Path, default=ROOT / "causalkv-data" / "bench-results"
    )
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--plots-dir", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--from-results", type=Path, default=None, help="re-render from summary.json"
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.repetitions = 1
        arguments.duration = min(arguments.duration, 3.0)
        arguments.warmup = min(arguments.warmup, 1.0)
        arguments.keys = min(arguments.keys, 1_000)
        arguments.profile_duration = min(arguments.profile_duration, 3.0)
    return arguments


def main() -> None:
    arguments = parse_arguments()
    if arguments.from_results is not None:
        summary = json.loads((arguments.from_results / "summary.json").read_text())
        for run in summary["runs"]:  # the results may have moved since
            if "report_path" in run:
                run["report_path"] = str(arguments.from_results / Path(run["report_path"]).name)
        raw = arguments.from_results / "profile-causalkv-1-A.raw"
        if summary.get("profile") and raw.exists():  # re-classify with the current summariser
            from profile_summary import CLASSES, hot_spots

            summary["profile"].update(hot_spots(raw, top=15), classes=list(CLASSES))
    else:
        started = time.monotonic()
        comparison = Comparison(arguments)
        systems = make_systems(
            arguments.results_dir / "data", [s for s in arguments.systems.split(",") if s]
        )
        wanted = [s for s in arguments.scenarios.split(",") if s]
        scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
        try:
            comparison.run(systems, scenarios)
            profile = (
                None if arguments.no_profile else comparison.profile(arguments.profile_duration)
            )
        except KeyboardInterrupt:
            print("\ninterrupted: writing what was measured")
            profile = None
        summary = comparison.summary(started, profile)
        (arguments.results_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plots = write_plots(summary, arguments.plots_dir)
    arguments.doc.parent.mkdir(parents=True, exist_ok=True)
    arguments.doc.write_text(render_document(summary, plots, arguments.doc.parent))
    print(f"\nwrote {arguments.doc} and {len(plots)} plots under {arguments.plots_dir}")
    print("\nCommands that reproduce every figure:")
    for name, commands in summary["system_commands"].items():
        for command in commands:
            print(f"  [{name}] {command}")
    for run in summary["runs"]:
        print(f"  [{run['system']} {run['scenario']} r{run['repetition']}] {run['command']}")


if __name__ == "__main__":
    main()
