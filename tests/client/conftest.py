"""Fixtures for the client tests: real clusters of node processes on 127.0.0.1.

``cluster`` (6 nodes, 2 shards, memory storage) is shared by every test that
leaves the nodes running; tests that kill nodes or change the view start their
own with ``make_cluster``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from causalkv.local_cluster import LocalCluster, http_json

ClusterFactory = Callable[..., LocalCluster]


def forwarded_requests(cluster: LocalCluster) -> dict[str, int]:
    """``counters.forwarded_requests`` of every running node, by address."""
    counts = {}
    for node in cluster.nodes:
        if node.is_running():
            status, body = http_json("GET", f"{node.url}/status", timeout_s=5)
            assert status == 200, body
            counts[node.address] = int(body["counters"]["forwarded_requests"])
    return counts


def wait_until_replicated(addresses: Iterable[str], metadata: dict[str, str]) -> None:
    """Block until each node has applied everything ``metadata`` depends on in its shard.

    Replication is asynchronous: a write acknowledged by one replica reaches the others
    a moment later. A test that kills the replica right away may leave the survivors
    unable to serve the session (they wait for the dead node's updates, as causality
    demands). A listing that carries the metadata is answered only once the node caught up.
    """
    for address in addresses:
        status, body = http_json(
            "GET", f"http://{address}/data", {"causal-metadata": metadata}, timeout_s=30
        )
        assert status == 200, (address, status, body)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """6 nodes in 2 shards with the view installed; never killed or reconfigured."""
    local = LocalCluster(6, 2, data_dir=tmp_path_factory.mktemp("client-cluster"), storage="memory")
    try:
        local.start()
        local.install_view()
        yield local
    finally:
        local.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Start a private cluster (view installed unless ``install=False``); stopped after the test."""
    started: list[LocalCluster] = []

    def make(nodes: int = 6, shards: int = 2, install: bool = True) -> LocalCluster:
        local = LocalCluster(
            nodes, shards, data_dir=tmp_path / f"cluster{len(started)}", storage="memory"
        )
        started.append(local)
        local.start()
        if install:
            local.install_view()
        return local

    try:
        yield make
    finally:
        for local in started:
            local.stop()


@pytest.fixture
def addresses(cluster: LocalCluster) -> list[str]:
    """Every node address of the shared cluster."""
    return [node.address for node in cluster.nodes]
