"""How long a node holding N keys takes to restart (default 1,000,000).

Builds a real data directory through the storage layer (the same encoding and
transactions a node uses, without going through HTTP, which would take minutes
to load a million keys), then starts `causalkv serve` on it and measures the
time until it answers /ping and serves a read. Prints the figures.

    .venv/bin/python bench/restart_recovery.py [--keys 1000000] [--value-bytes 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from causalkv.core.base import ReplicaSettings
from causalkv.core.effects import PersistBatch
from causalkv.core.keystore import Version
from causalkv.core.replica import Replica
from causalkv.core.view import parse_sharded_view
from causalkv.local_cluster import free_ports, http_json
from causalkv.runtime.storage import SqliteStorage


def build(data_dir: Path, keys: int, value_bytes: int, port: int) -> None:
    storage = SqliteStorage(data_dir, "bench", "1")
    replica = Replica(ReplicaSettings(), os.urandom(6))
    replica.self_address = f"127.0.0.1:{port}"
    view = parse_sharded_view({"s1": [{"address": replica.self_address, "id": 1}]}).with_epoch(1)
    replica._set_membership(view)
    writer = replica.writer
    assert writer is not None
    value = "v" * value_bytes
    batch_size = 50_000
    for start in range(0, keys, batch_size):
        entries = {}
        for index in range(start, min(keys, start + batch_size)):
            seq = index + 1
            entries[f"key-{index:08d}"] = (Version(writer, seq, seq, {}, value),)
        replica.writer_seq = min(keys, start + batch_size)
        replica.known[writer] = replica.writer_seq
        replica.store.lamport = replica.writer_seq
        storage.write([PersistBatch(start + 1, entries, replica._durable_meta())])  # type: ignore[arg-type]
    storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="causalkv-restart-"))
    (port,) = free_ports(1)
    data_dir = workdir / "node1"
    try:
        started = time.perf_counter()
        build(data_dir, options.keys, options.value_bytes, port)
        size_mb = sum(f.stat().st_size for f in data_dir.iterdir()) / 1e6
        print(
            f"built {options.keys:,} keys ({size_mb:.0f} MB on disk) in {time.perf_counter() - started:.1f} s"
        )
        timings = []
        for run in range(options.runs):
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "causalkv", "serve", "--listen", f"127.0.0.1:{port}",
                 "--node-id", "1", "--cluster-name", "bench", "--data-dir", str(data_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while True:
                try:
                    if http_json("GET", f"http://127.0.0.1:{port}/ping", timeout_s=1)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.02)
            ready = time.perf_counter() - started
            status, body = http_json(
                "GET", f"http://127.0.0.1:{port}/data/key-{options.keys - 1:08d}", {}
            )
            assert status == 200, (status, body)
            _, node = http_json("GET", f"http://127.0.0.1:{port}/status")
            assert node["keys"] == options.keys
            timings.append(ready)
            print(f"run {run + 1}: ready in {ready:.2f} s (recovery {node['storage']['recovery_s']:.2f} s), "
                  f"{options.keys:,} keys served")  # fmt: skip
            process.terminate()
            process.wait(30)
        timings.sort()
        print(f"restart with {options.keys:,} keys: median {timings[len(timings) // 2]:.2f} s"
              f" (min {timings[0]:.2f}, max {timings[-1]:.2f}) over {len(timings)} runs")  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
