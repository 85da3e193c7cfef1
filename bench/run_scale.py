"""Run the scale and recovery measurements in one go and write docs/benchmarks-scale.md.

The throughput comparison (``run_comparison.py``) covers requests; this covers
what a store does with many keys and after faults:

1. memory overhead per key at 1,000,000 keys (``memory_per_key.py``);
2. resharding 100,000 keys from 2 to 3 shards (``reshard.py``);
3. restarting a node that holds 1,000,000 keys (``restart_recovery.py``);
4. heal-to-convergence after a partition, and write-to-every-replica time, on
   real test hosts (``network_faults.py``; needs root, skipped otherwise).

Each script's output is kept verbatim in the document, with the command that
produced it. Key figures also go to ``docs/benchmarks/scale.json``, from which
``run_comparison.py`` adds the memory target to the targets of
docs/benchmarks.md.

    .venv/bin/python bench/run_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "benchmarks-scale.md"
FIGURES = ROOT / "docs" / "benchmarks" / "scale.json"


def _run(arguments: list[str]) -> tuple[str, float, int]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    output = completed.stdout + (completed.stderr[-2000:] if completed.returncode else "")
    return output.strip(), time.perf_counter() - started, completed.returncode


def _commit() -> str:
    completed = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return completed.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    options = parser.parse_args()
    memory_keys = 50_000 if options.quick else 1_000_000
    reshard_keys = 5_000 if options.quick else 100_000
    restart_keys = 50_000 if options.quick else 1_000_000
    steps: list[tuple[str, str, list[str]]] = [
        (
            "memory",
            "Memory overhead per key",
            ["bench/memory_per_key.py", "--keys", str(memory_keys), "--deps", "0", "1", "3", "6"],
        ),
        (
            "reshard",
            "Resharding 2 → 3 shards",
            ["bench/reshard.py", "--keys", str(reshard_keys)],
        ),
        (
            "restart",
            "Restart of a node with many keys",
            ["bench/restart_recovery.py", "--keys", str(restart_keys), "--runs", "3"],
        ),
    ]
    if os.geteuid() == 0:
        steps.append(
            (
                "network",
                "Partition heal → convergence; write → every replica (real test hosts)",
                ["bench/network_faults.py", "--runs", "3" if options.quick else "20"],
            )
        )
    figures: dict[str, object] = {}
    sections: list[str] = []
    for name, title, arguments in steps:
        print(f"==> {title}: {' '.join(arguments)}", flush=True)
        output, elapsed_s, returncode = _run(arguments)
        print(output, flush=True)
        status = "" if returncode == 0 else f" **(failed, exit code {returncode})**"
        sections += [
            f"## {title}{status}",
            "",
            "```sh",
            f".venv/bin/python {' '.join(arguments)}",
            "```",
            "",
            "```text",
            output,
            "```",
            "",
            f"({elapsed_s:.0f} s in all.)",
            "",
        ]
        if name == "memory":
            per_deps = {
                int(match.group(1)): int(match.group(2))
                for match in re.finditer(
                    r"(\d+) dependencies per version: (\d+) bytes of overhead", output
                )
            }
            figures["memory_keys"] = memory_keys
            figures["memory_bytes_by_dependencies"] = per_deps
        elif name == "reshard":
            match = re.search(
                r"in ([0-9.]+) s; ([0-9,]+) versions handed off; (\d+) keys missing", output
            )
            if match:
                figures["reshard_keys"] = reshard_keys
                figures["reshard_s"] = float(match.group(1))
                figures["reshard_missing"] = int(match.group(3))
        elif name == "network":
            for label, prefix in (
                ("heal", r"\(a\) heal to convergence"),
                ("ack", r"\(b\) ack to every replica"),
            ):
                match = re.search(prefix + r": n=(\d+) .*?p50 ([0-9.]+) .*?p99 ([0-9.]+)", output)
                if match:
                    figures[f"{label}_runs"] = int(match.group(1))
                    figures[f"{label}_p50_ms"] = float(match.group(2))
                    figures[f"{label}_p99_ms"] = float(match.group(3))
        elif name == "restart":
            match = re.search(r"median ([0-9.]+) s", output)
            if match:
                figures["restart_keys"] = restart_keys
                figures["restart_median_s"] = float(match.group(1))
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    header = [
        "# Benchmarks: scale and recovery",
        "",
        "Generated by `bench/run_scale.py` — do not edit by hand; re-run the script."
        + (" **This is a `--quick` smoke run, not a measurement.**" if options.quick else ""),
        "",
        f"Measured {created} on this machine ({os.cpu_count()} CPUs, load average"
        f" {load:.1f} at the end), commit {_commit()}. Throughput, latency, replication lag"
        " and metadata size are in [benchmarks.md](benchmarks.md).",
        "",
    ]
    if not any(step[0] == "network" for step in steps):
        header += [
            "The real-network measurements need root (network namespaces) and were skipped.",
            "",
        ]
    DOCUMENT.write_text("\n".join(header + sections))
    figures["created"] = created
    figures["quick"] = options.quick
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {DOCUMENT.relative_to(ROOT)} and {FIGURES.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
