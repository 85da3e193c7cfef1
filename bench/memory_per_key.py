"""Memory overhead per key of a replica's store, beyond the key and value.

Builds a store of N keys (default 1,000,000) the way a node holds them (one
version each, with the dependencies a client session would attach) and prints
the growth of the process's resident memory divided by N, after subtracting
the key and value strings themselves.

    .venv/bin/python bench/memory_per_key.py [--keys 1000000] [--deps 0 1 3]
"""

from __future__ import annotations

import argparse
import gc
import os

from causalkv.core.keystore import KeyStore, Version
from causalkv.core.writer import Writer, make_writer


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(keys_count: int, dependencies: int) -> float:
    writer = make_writer(1, 7, 0, os.urandom(6))
    others: list[Writer] = [make_writer(1, 7, 0, os.urandom(6)) for _ in range(dependencies)]
    keys = [f"user:{index:08d}" for index in range(keys_count)]
    values = ["v" * 100 + str(index) for index in range(keys_count)]
    gc.collect()
    before = resident_bytes()
    store = KeyStore()
    for index in range(keys_count):
        deps = {other: index + position + 1 for position, other in enumerate(others)}
        store.apply(keys[index], Version(writer, index + 1, index + 1, deps, values[index]))
    gc.collect()
    return (resident_bytes() - before) / keys_count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--deps", type=int, nargs="+", default=[0, 1, 3])
    options = parser.parse_args()
    for dependencies in options.deps:
        overhead = measure(options.keys, dependencies)
        print(
            f"{options.keys:,} keys, {dependencies} dependencies per version:"
            f" {overhead:.0f} bytes of overhead per key (target: under 300)"
        )


if __name__ == "__main__":
    main()
