"""Benchmark: check a 100,000-operation synthetic history and print the time.

    .venv/bin/python bench/check_speed.py [--operations N] [--processes P] [--keys K]

The history comes from the sequentially consistent reference store of
`causalkv.check.synthetic` (so it must be judged valid), is written to a
temporary JSON-lines file, then loaded and checked like ``causalkv check``
would. Loading (parsing and validation) and checking are timed separately.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from causalkv.check import HistoryRecorder, check_history, load_history
from causalkv.check.synthetic import Workload, generate_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    workload = Workload(
        processes=arguments.processes,
        keys=arguments.keys,
        operations=arguments.operations,
        shards=arguments.shards,
        list_weight=0.2,
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "history.jsonl"
        started = time.perf_counter()
        with HistoryRecorder(path, keep_lines=False, flush_every_line=False) as recorder:
            generate_history(workload, arguments.seed, recorder)
        generated = time.perf_counter()
        history = load_history(path)
        loaded = time.perf_counter()
        result = check_history(history)
        checked = time.perf_counter()
        size_mb = path.stat().st_size / 1e6
    print(
        f"history: {len(history):,} operations, {result.statistics.processes} processes, "
        f"{result.statistics.keys} keys, {result.statistics.observations:,} observations, "
        f"{size_mb:.1f} MB"
    )
    print(f"generate: {generated - started:6.2f} s")
    print(f"load:     {loaded - generated:6.2f} s")
    print(f"check:    {checked - loaded:6.2f} s")
    print(f"total:    {checked - generated:6.2f} s (load + check)")
    print("verdict:", "valid" if result.ok else f"INVALID {result.counts}")


if __name__ == "__main__":
    main()
