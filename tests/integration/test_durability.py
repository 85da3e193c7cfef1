"""Durability, restart and recovery on real processes with the default SQLite
storage: acknowledged writes survive SIGKILL of one replica and of all three at
once, restarted nodes catch up, deleted keys never come back and tombstones are
collected, and a data directory from another cluster or node is refused."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from causalkv.check import HistoryRecorder, check_history
from causalkv.core.view import parse_sharded_view
from causalkv.local_cluster import LocalCluster, LocalNode
from tests.integration import http


@pytest.fixture
def shard_of_three(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(3, 1, data_dir=tmp_path, storage="sqlite")
    try:
        cluster.start()
        cluster.install_view()
        yield cluster
    finally:
        cluster.stop()


class Client(threading.Thread):
    """Writes as fast as it can (unique values), occasionally reads; records a history."""

    def __init__(self, recorder: HistoryRecorder, cluster: LocalCluster, name: str) -> None:
        super().__init__(daemon=True)
        self.recorder = recorder
        self.cluster = cluster
        self.process = name
        self.metadata: object = {}
        self.stop_event = threading.Event()
        self.acknowledged: dict[str, str] = {}
        self.random = random.Random(name)

    def run(self) -> None:
        counter = 0
        while not self.stop_event.is_set():
            counter += 1
            node = self.random.choice(self.cluster.nodes)
            key = f"{self.process}-{counter % 50}"
            if counter % 4 == 0:
                invocation = self.recorder.invoke(self.process, "get", key, None, node.address)
                try:
                    response = http.get(node.address, key, self.metadata, timeout_s=3)
                except OSError:
                    self.recorder.fail(invocation)
                    time.sleep(0.01)
                    continue
                if response.status in (200, 404):
                    self.metadata = response.body["causal-metadata"]
                    value = response.body.get("value") if response.status == 200 else None
                    self.recorder.ok(invocation, value)
                else:
                    self.recorder.fail(invocation)
                continue
            value = f"{self.process}-v{counter}"
            invocation = self.recorder.invoke(self.process, "put", key, value, node.address)
            try:
                response = http.put(node.address, key, value, self.metadata, timeout_s=3)
            except OSError:
                self.recorder.info(invocation)
                time.sleep(0.01)
                continue
            if response.status == 200:
                self.metadata = response.body["causal-metadata"]
                self.acknowledged[key] = value
                self.recorder.ok(invocation)
            else:
                self.recorder.info(invocation)


def restart(node: LocalNode) -> None:
    node.start()
    node.wait_ready(30)


def final_reads(cluster: LocalCluster, recorder: HistoryRecorder, keys: list[str]) -> None:
    view = parse_sharded_view(http.request(cluster.nodes[0].address, "GET", "/view").body["view"])
    for node in cluster.nodes:
        shard_index = view.shard_index_of_node(node.address)
        assert shard_index is not None
        covers = [k for k in keys if view.shard_index_for_key(k) == shard_index]
        invocation = recorder.invoke(f"final-{node.node_id}", "list", None, None, node.address)
        items = http.listing(node.address).body["items"]
        recorder.ok(
            invocation, items, final=True, covers=covers, shard=view.shards[shard_index].name
        )


def wait_converged(cluster: LocalCluster, timeout_s: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        listings = [http.listing(n.address).body["items"] for n in cluster.nodes]
        if all(listing == listings[0] for listing in listings):
            return listings[0]
        assert time.monotonic() < deadline, "replicas did not converge"
        time.sleep(0.1)


def test_sigkill_at_random_moments_loses_nothing(shard_of_three: LocalCluster) -> None:
    cluster = shard_of_three
    recorder = HistoryRecorder()
    clients = [Client(recorder, cluster, f"c{i}") for i in range(3)]
    for client in clients:
        client.start()
    chaos = random.Random(7)
    try:
        for round_number in range(6):
            time.sleep(chaos.uniform(0.3, 1.0))
            if round_number == 3:
                victims = list(cluster.nodes)  # all three at once
            else:
                victims = [chaos.choice(cluster.nodes)]
            for victim in victims:
                victim.kill()
            time.sleep(chaos.uniform(0.1, 0.5))
            for victim in victims:
                restart(victim)
        time.sleep(0.5)
    finally:
        for client in clients:
            client.stop_event.set()
        for client in clients:
            client.join(30)
    acknowledged = {k: v for client in clients for k, v in client.acknowledged.items()}
    assert len(acknowledged) > 20, "the clients made too little progress to mean anything"
    state = wait_converged(cluster)
    missing = [k for k in acknowledged if k not in state]
    assert not missing, f"acknowledged keys lost: {missing[:5]}"
    final_reads(cluster, recorder, sorted(acknowledged))
    result = check_history(recorder.history())
    assert result.ok, result.render()


def test_restarted_node_recovers_and_catches_up(shard_of_three: LocalCluster) -> None:
    cluster = shard_of_three
    first, _second, third = cluster.nodes
    metadata = http.put(first.address, "before", "1").body["causal-metadata"]
    assert http.get(third.address, "before", metadata).status == 200
    third.kill()
    for index in range(50):
        metadata = http.put(first.address, f"during-{index}", str(index), metadata).body[
            "causal-metadata"
        ]
    restart(third)
    status = http.request(third.address, "GET", "/status").body
    assert status["epoch"] == 1 and status["member"], "the view is recovered from disk"
    response = http.get(third.address, "during-49", metadata, timeout_s=30)
    assert response.status == 200 and response.body["value"] == "49"
    assert len(wait_converged(cluster)) == 51


def test_deleted_keys_never_come_back_and_tombstones_are_collected(
    shard_of_three: LocalCluster,
) -> None:
    cluster = shard_of_three
    first, second, third = cluster.nodes
    metadata: object = {}
    for index in range(20):
        metadata = http.put(first.address, f"gone-{index}", "v", metadata).body["causal-metadata"]
    wait_converged(cluster)
    # One replica misses the deletes while it is down, then comes back.
    third.kill()
    for index in range(20):
        response = http.delete(second.address, f"gone-{index}", metadata)
        assert response.status == 200
        metadata = response.body["causal-metadata"]
    time.sleep(3)  # longer than a tombstone-collection interval: nothing may be collected yet
    assert http.request(second.address, "GET", "/status").body["tombstones"] == 20
    restart(third)
    deadline = time.monotonic() + 30
    while True:
        statuses = [http.request(n.address, "GET", "/status").body for n in cluster.nodes]
        if all(s["tombstones"] == 0 and s["keys"] == 0 for s in statuses):
            break
        assert time.monotonic() < deadline, [(s["tombstones"], s["keys"]) for s in statuses]
        time.sleep(0.2)
    for node in cluster.nodes:
        for index in range(20):
            assert http.get(node.address, f"gone-{index}").status == 404
        assert http.listing(node.address).body["items"] == {}


def test_foreign_data_directories_are_refused(tmp_path: Path) -> None:
    cluster = LocalCluster(1, 1, data_dir=tmp_path, storage="sqlite")
    cluster.start()
    cluster.install_view()
    http.put(cluster.nodes[0].address, "k", "v")
    cluster.stop()
    data_dir = cluster.nodes[0].data_dir
    base = [
        sys.executable,
        "-m",
        "causalkv",
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--data-dir",
        str(data_dir),
    ]
    other_cluster = subprocess.run(
        [*base, "--node-id", "1", "--cluster-name", "someone-else"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other_cluster.returncode == 1
    assert "belongs to cluster" in other_cluster.stderr
    other_node = subprocess.run(
        [*base, "--node-id", "2", "--cluster-name", "causalkv-dev"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other_node.returncode == 1 and "belongs to node" in other_node.stderr
    import sqlite3

    with sqlite3.connect(data_dir / "causalkv.sqlite3") as connection:
        connection.execute("UPDATE meta SET value = X'3939' WHERE name = 'format'")
    wrong_format = subprocess.run(
        [*base, "--node-id", "1", "--cluster-name", "causalkv-dev"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong_format.returncode == 1 and "storage format 99" in wrong_format.stderr


def test_sigterm_stops_within_five_seconds(shard_of_three: LocalCluster) -> None:
    node = shard_of_three.nodes[0]
    http.put(node.address, "k", "v")
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    code = node.wait(10)
    assert code == 0
    assert time.monotonic() - started < 5
    restart(node)
    assert http.get(node.address, "k").body["value"] == "v"
