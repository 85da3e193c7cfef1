"""Wall time to reshard N keys (default 100,000) from 2 to 3 shards.

Starts real node processes (durable SQLite storage by default), loads the keys
through the HTTP API, then times `PUT /view` from the 2-shard view to the
3-shard view (the call returns once every node serves the new view, i.e. every
moved key is in place and durable), and checks that every key reads back.

    .venv/bin/python bench/reshard.py [--keys 100000] [--replicas 1] [--storage sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from causalkv.local_cluster import LocalCluster, http_json
from causalkv.runtime.http_client import HttpClientPool


async def load(addresses: list[str], keys: int, value_bytes: int, concurrency: int = 64) -> float:
    pool = HttpClientPool(idle_per_host=concurrency)
    value = "v" * value_bytes
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(keys):
        queue.put_nowait(index)

    async def worker(number: int) -> None:
        address = addresses[number % len(addresses)]
        while not queue.empty():
            index = queue.get_nowait()
            body = json.dumps({"value": f"{value}{index}", "causal-metadata": {}}).encode()
            response = await pool.request(address, "PUT", f"/data/key-{index}", body, {}, 30)
            assert response.status == 200, response.body

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    pool.close()
    return time.perf_counter() - started


async def verify(addresses: list[str], keys: int, concurrency: int = 64) -> int:
    pool = HttpClientPool(idle_per_host=concurrency)
    missing = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(keys):
        queue.put_nowait(index)

    async def worker(number: int) -> None:
        nonlocal missing
        address = addresses[number % len(addresses)]
        while not queue.empty():
            index = queue.get_nowait()
            response = await pool.request(address, "GET", f"/data/key-{index}", b"{}", {}, 30)
            if response.status != 200:
                missing += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    pool.close()
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per shard")
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--storage", default="sqlite", choices=("sqlite", "memory"))
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="causalkv-reshard-"))
    replicas = options.replicas
    cluster = LocalCluster(2 * replicas, 2, data_dir=workdir, storage=options.storage)
    cluster.add_nodes(replicas)
    try:
        cluster.start()
        before = cluster.view_json(cluster.nodes[: 2 * replicas], 2)
        cluster.install_view(before)
        addresses = [n.address for n in cluster.nodes[: 2 * replicas]]
        seconds = asyncio.run(load(addresses, options.keys, options.value_bytes))
        print(
            f"loaded {options.keys:,} keys in {seconds:.1f} s ({options.keys / seconds:,.0f} writes/s)"
        )
        after = cluster.view_json(cluster.nodes, 3)
        started = time.perf_counter()
        status, body = http_json("PUT", f"{cluster.nodes[0].url}/view", {"view": after}, 600)
        elapsed = time.perf_counter() - started
        assert status == 200, body
        moved = sum(
            http_json("GET", f"{node.url}/status")[1]["handoff"]["versions_acked"]
            for node in cluster.nodes
        )
        missing = asyncio.run(verify([n.address for n in cluster.nodes], options.keys))
        print(
            f"resharded {options.keys:,} keys from 2 to 3 shards ({replicas} replica(s) per shard,"
            f" {options.storage}) in {elapsed:.2f} s; {moved:,} versions handed off; {missing} keys missing"
        )
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
