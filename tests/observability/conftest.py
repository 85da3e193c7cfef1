"""Fixtures and helpers for the observability tests: real node processes, scraped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from causalkv.core.placement import HashRing
from causalkv.local_cluster import LocalCluster, LocalNode
from tests.integration import http


@dataclass
class Scrape:
    """One ``GET /metrics`` answer, parsed."""

    samples: list[tuple[str, dict[str, str], float]]
    content_type: str
    headers: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
            for sample_name, sample_labels, _ in self.samples
        )

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [labels for sample_name, labels, _ in self.samples if sample_name == name]


def scrape(node: LocalNode | str) -> Scrape:
    address = node if isinstance(node, str) else node.address
    response = http.request(address, "GET", "/metrics", timeout_s=10)
    assert response.status == 200, response.raw[:300]
    samples = [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.raw.decode())
        for sample in family.samples
    ]
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Scrape(samples, headers.get("content-type", ""), headers)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def shard_of(cluster: LocalCluster, node: LocalNode) -> str:
    for shard, members in cluster.view_json().items():
        if any(member["address"] == node.address for member in members):
            return shard
    raise AssertionError(f"{node.address} is in no shard")


def key_in_shard(shard: str, shards: list[str], prefix: str = "key") -> str:
    ring = HashRing(sorted(shards))
    for index in range(100_000):
        key = f"{prefix}-{index}"
        if ring.shard_name_for(key) == shard:
            return key
    raise AssertionError(f"no key found for {shard}")


def start_cluster(
    path: Path, nodes: int = 6, shards: int = 2, extra: list[str] | None = None
) -> LocalCluster:
    cluster = LocalCluster(
        nodes, shards, data_dir=path, storage="memory", extra_args=["--test-hooks", *(extra or [])]
    )
    try:
        cluster.start()
        cluster.install_view()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """6 nodes, 2 shards, view installed; memory storage; test hooks on."""
    local = start_cluster(tmp_path_factory.mktemp("observability"))
    try:
        yield local
    finally:
        local.stop()
