"""Benchmark: convergence after a partition heals, and replication lag, on real test hosts.

    sudo .venv/bin/python bench/network_faults.py [--runs 20] [--keys 1000] [--writes 500]
        [--storage sqlite|memory] [--only heal|lag] [--hold-s 0]

Needs root (network namespaces; see ``causalkv.testing.netns``). Every node is
its own ``causalkv serve`` process in its own test host with its own IP; the
figures therefore include real TCP, the HTTP stack and (with sqlite) fsync.

(a) **Heal to convergence.** Two shards of three replicas, each split 1|2 by a
    partition. During the partition ``--keys`` fresh keys are written, half
    through the minority replicas and half through the majority ones (each
    client writes keys of its own node's shard). The clock starts right after
    the partition rules are removed and stops when every replica of every shard
    reports the same ``known`` clock in ``GET /status`` (the writer sequence
    numbers it has applied: replicas hold causally closed states, so equal
    clocks mean equal data). The clocks are polled about every 10-20 ms, which
    bounds the resolution. After each run (untimed) every replica's listing is
    compared, and every key of the run must be there with its written value.
    One cluster serves all runs; each run uses fresh keys.

(b) **Write to every replica.** One shard of three replicas, healthy network.
    A client writes a fresh key through one replica; from the moment the
    acknowledgement arrives, the other two replicas are polled back to back
    with ``GET /inspect/key/<key>`` (what that node itself holds, no
    forwarding) until both show the value. Reported: time from the
    acknowledgement until the last replica shows it (the replication lag a
    reader on another replica can observe), and from sending the write (the
    full write-to-everywhere time), plus the poll round-trip time that bounds
    the resolution.

Both parts record every client operation and finish by running the history
checker on it (it must accept).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.netfaults.cluster

from tests.netfaults.cluster import Client, Cluster, Connection, Node, http_json

from causalkv.testing.netns import Network, netns_unavailable_reason


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.4999))
    return ordered[min(len(ordered), rank) - 1]


def summary_ms(name: str, values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name}: n={len(ms)} min {min(ms):.1f} p50 {statistics.median(ms):.1f} "
        f"p90 {percentile(ms, 0.9):.1f} p99 {percentile(ms, 0.99):.1f} max {max(ms):.1f} ms"
    )


# --------------------------------------------------------------------------- (a) heal


def known_clock(node: Node) -> tuple[tuple[str, int], ...] | None:
    reply = http_json(node.address, "GET", "/status", timeout_s=2.0)
    if reply.status != 200 or not isinstance(reply.body, dict):
        return None
    return tuple(sorted((entry["writer"], int(entry["seq"])) for entry in reply.body["known"]))


def clocks_agree(cluster: Cluster) -> bool:
    for shard in cluster.shard_names:
        clocks = [known_clock(node) for node in cluster.replicas(shard)]
        if clocks[0] is None or any(clock != clocks[0] for clock in clocks[1:]):
            return False
    return True


def write_keys(assignments: Sequence[tuple[Client, list[str]]]) -> dict[str, str]:
    """Each client writes its keys once (one thread per client); returns key -> value."""
    written: dict[str, str] = {}
    lock = threading.Lock()
    failures: list[str] = []

    def run(client: Client, keys: list[str]) -> None:
        for key in keys:
            record = client.put(key)
            if record.outcome != "ok":
                failures.append(f"{key}: {record.outcome} {record.status} {record.error}")
                continue
            assert record.value is not None
            with lock:
                written[key] = record.value

    threads = [threading.Thread(target=run, args=a) for a in assignments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} writes failed during the partition: {failures[:3]}")
    return written


def bench_heal(
    runs: int, keys_per_run: int, storage: str, workdir: Path, hold_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """Returns the heal-to-convergence times and the partitions' durations."""
    with Network(6) as network:
        cluster = Cluster(network, workdir / "heal", (3, 3), storage=storage, record_to_file=False)
        try:
            cluster.start()
            minority = [cluster.nodes[0], cluster.nodes[3]]
            majority = [n for n in cluster.nodes if n not in minority]
            clients = {node.name: cluster.client(f"w-{node.name}", node) for node in cluster.nodes}
            # Half the keys through the minority (2 nodes), half through the majority (4).
            share = {node.name: keys_per_run // 4 for node in minority}
            share.update({node.name: keys_per_run // 8 for node in majority})
            share[majority[0].name] += keys_per_run - sum(share.values())
            durations: list[float] = []
            partitions: list[float] = []
            for run in range(runs):
                assignments = [
                    (
                        clients[node.name],
                        cluster.keys_for(node.shard, share[node.name], f"r{run}-{node.name}"),
                    )
                    for node in cluster.nodes
                ]
                network.partition([[n.host for n in minority], [n.host for n in majority]])
                cut = time.monotonic()
                written = write_keys(assignments)
                time.sleep(hold_s)  # optional: a longer partition
                network.heal()
                healed = time.monotonic()
                partitions.append(healed - cut)
                while not clocks_agree(cluster):
                    if time.monotonic() - healed > 60:
                        raise RuntimeError(f"run {run}: no convergence within 60 s")
                converged = time.monotonic() - healed
                durations.append(converged)
                divergent = cluster.divergence()
                if divergent:
                    raise RuntimeError(f"run {run}: clocks agree but listings differ")
                for shard in cluster.shard_names:
                    items = cluster.listing(cluster.replicas(shard)[0]) or {}
                    missing = [
                        k
                        for k, v in written.items()
                        if cluster.shard_of(k) == shard and items.get(k) != v
                    ]
                    if missing:
                        raise RuntimeError(f"run {run}: {len(missing)} keys missing in {shard}")
                print(
                    f"  run {run + 1:2}/{runs}: {len(written)} keys, partition "
                    f"{partitions[-1]:.1f} s, converged {converged * 1000:.0f} ms after the heal",
                    flush=True,
                )
            cluster.take_final_reads()
            result = cluster.check()
            if not result.ok:
                raise RuntimeError(result.render())
            return durations, partitions
        finally:
            cluster.stop()


# --------------------------------------------------------------------------- (b) lag


def bench_lag(
    writes: int, storage: str, workdir: Path
) -> tuple[list[float], list[float], list[float]]:
    with Network(3) as network:
        cluster = Cluster(network, workdir / "lag", (3,), storage=storage, record_to_file=False)
        try:
            cluster.start()
            origin, *others = cluster.nodes
            client = cluster.client("writer", origin)
            pollers = {node.name: Connection(node.address, 5.0) for node in others}
            from_ack: list[float] = []
            from_send: list[float] = []
            poll_rtts: list[float] = []
            for number in range(writes + 20):
                key = f"lag-{number}"
                sent = time.monotonic()
                record = client.put(key)
                acked = time.monotonic()
                if record.outcome != "ok":
                    raise RuntimeError(f"write {key} failed: {record}")
                waiting = set(pollers)
                while waiting:
                    for name in sorted(waiting):
                        before = time.monotonic()
                        reply = pollers[name].request("GET", f"/inspect/key/{key}")
                        poll_rtts.append(time.monotonic() - before)
                        if reply.status == 200 and reply.body.get("value") == record.value:
                            waiting.discard(name)
                    if time.monotonic() - acked > 10:
                        raise RuntimeError(f"{key} not replicated within 10 s")
                seen = time.monotonic()
                if number >= 20:  # the first writes warm up connections
                    from_ack.append(seen - acked)
                    from_send.append(seen - sent)
            for connection in pollers.values():
                connection.close()
            cluster.wait_for_convergence()
            cluster.take_final_reads()
            result = cluster.check()
            if not result.ok:
                raise RuntimeError(result.render())
            return from_ack, from_send, poll_rtts
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="partition/heal runs (a)")
    parser.add_argument("--keys", type=int, default=1000, help="keys written per partition (a)")
    parser.add_argument("--writes", type=int, default=500, help="measured writes (b)")
    parser.add_argument("--storage", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--only", choices=("heal", "lag"), default=None)
    parser.add_argument(
        "--hold-s", type=float, default=0.0, help="keep each partition this long after writing (a)"
    )
    arguments = parser.parse_args()
    reason = netns_unavailable_reason()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory(prefix="ckv-bench-") as directory:
        workdir = Path(directory)
        print(f"storage: {arguments.storage}", flush=True)
        if arguments.only in (None, "heal"):
            print(f"(a) heal -> convergence, {arguments.keys} keys written during a 1|2 split")
            durations, partitions = bench_heal(
                arguments.runs, arguments.keys, arguments.storage, workdir, arguments.hold_s
            )
            print(summary_ms("(a) partition length", partitions))
            print(summary_ms("(a) heal to convergence", durations))
        if arguments.only in (None, "lag"):
            print(f"(b) write -> visible on every replica, {arguments.writes} writes")
            from_ack, from_send, rtts = bench_lag(arguments.writes, arguments.storage, workdir)
            print(summary_ms("(b) ack to every replica", from_ack))
            print(summary_ms("(b) send to every replica", from_send))
            print(summary_ms("(b) /inspect poll round trip", rtts))


if __name__ == "__main__":
    main()
