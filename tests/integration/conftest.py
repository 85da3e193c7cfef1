"""Fixtures that start real clusters of node processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from causalkv.local_cluster import LocalCluster


@contextlib.contextmanager
def running_cluster(
    nodes: int,
    shards: int,
    data_dir: Path,
    extra_args: Sequence[str] = ("--test-hooks",),
    install_view: bool = True,
) -> Iterator[LocalCluster]:
    """A cluster of node processes (memory storage), stopped on exit."""
    local = LocalCluster(
        nodes, shards, data_dir=data_dir, storage="memory", extra_args=list(extra_args)
    )
    try:
        local.start()
        if install_view:
            local.install_view()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """6 nodes, 2 shards, view installed; memory storage; test hooks on."""
    with running_cluster(6, 2, tmp_path_factory.mktemp("cluster")) as local:
        yield local


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """6 nodes, 2 shards, no view yet."""
    with running_cluster(6, 2, tmp_path, install_view=False) as local:
        yield local
