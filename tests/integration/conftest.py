"""Fixtures that start real clusters of node processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from causalkv.local_cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """6 nodes, 2 shards, view installed; memory storage; test hooks on."""
    data_dir: Path = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(6, 2, data_dir=data_dir, storage="memory", extra_args=["--test-hooks"])
    try:
        local.start()
        local.install_view()
        yield local
    finally:
        local.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """6 nodes, 2 shards, no view yet."""
    local = LocalCluster(6, 2, data_dir=tmp_path, storage="memory", extra_args=["--test-hooks"])
    try:
        local.start()
        yield local
    finally:
        local.stop()
