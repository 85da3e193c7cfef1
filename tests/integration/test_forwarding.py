"""Forwarded writes are never sent twice.

A node that does not own a key forwards the request to a replica of the key's
shard. If that replica accepted the request and then fell silent, the write
may have been applied: sending it again (to the same or another replica)
could apply it a second time, after writes that depend on it (the simulator
found this: seed 50133). Such a write answers 503 "outcome unknown"; reads,
and writes that certainly never reached a replica (refused connections), are
retried until the causal-wait bound.

Real processes and sockets: the owning node is killed and its port taken by a
listener that accepts connections, reads requests and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from causalkv.core.requests import DEPENDENCY_TIMEOUT_TEXT, OUTCOME_UNKNOWN_TEXT
from causalkv.core.view import parse_sharded_view
from causalkv.local_cluster import LocalCluster
from tests.integration.conftest import running_cluster
from tests.integration.http import get, put

CAUSAL_WAIT_S = 2.0


class BlackHole:
    """Accepts TCP connections on a port, reads whatever comes, never answers."""

    def __init__(self, port: int) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.connections: list[socket.socket] = []
        self.bytes_received = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                for held in self.connections:
                    held.setblocking(False)
                    with contextlib.suppress(OSError):
                        self.bytes_received += len(held.recv(65536))
                continue
            self.connections.append(connection)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for held in self.connections:
            held.close()
        self.listener.close()


@pytest.fixture
def two_shards(tmp_path: Path) -> Iterator[LocalCluster]:
    with running_cluster(2, 2, tmp_path, ["--causal-wait-s", str(CAUSAL_WAIT_S)]) as local:
        yield local


def test_a_forwarded_write_that_may_have_been_applied_is_not_sent_again(
    two_shards: LocalCluster,
) -> None:
    forwarder, owner = two_shards.nodes
    view = parse_sharded_view(two_shards.view_json())
    owner_shard = view.shard_index_of_node(owner.address)
    key = next(
        candidate
        for candidate in (f"key-{index}" for index in range(1000))
        if view.shard_index_for_key(candidate) == owner_shard
    )

    first = put(forwarder.address, key, "v1")
    assert first.status == 200, first.body
    metadata = first.body["causal-metadata"]

    owner.kill()
    hole = BlackHole(owner.port)
    try:
        write = put(forwarder.address, key, "v2", metadata, timeout_s=30)
        assert write.status == 503, write.body
        assert write.body == {"error": OUTCOME_UNKNOWN_TEXT}, write.body
        assert hole.bytes_received > 0 or hole.connections, "the forward never reached the owner"

        read = get(forwarder.address, key, metadata, timeout_s=30)
        assert read.status == 503, read.body
        assert read.body == {"error": DEPENDENCY_TIMEOUT_TEXT}, read.body
    finally:
        hole.close()

    # Now the port refuses connections: the write certainly did not get anywhere,
    # so the forwarder keeps trying until the bound and says so.
    refused = put(forwarder.address, key, "v3", metadata, timeout_s=30)
    assert refused.status == 503, refused.body
    assert refused.body == {"error": DEPENDENCY_TIMEOUT_TEXT}, refused.body
