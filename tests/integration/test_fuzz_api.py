"""Property-based fuzzing of every endpoint from the node's own OpenAPI
description (schemathesis), with a bounded budget: against a live 3-node
cluster protected by a cluster secret, no generated request may produce a 5xx,
crash or hang a node, and data written before the run is unchanged after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from causalkv.api.openapi import openapi_document  # noqa: E402
from causalkv.local_cluster import LocalCluster  # noqa: E402
from tests.integration import http  # noqa: E402

SECRET = "fuzzing-secret-123"


@schemathesis.serializer("application/vnd.causalkv.peer+msgpack")
def _msgpack(context: object, value: object) -> bytes:
    import msgspec

    try:
        return msgspec.msgpack.encode(value)
    except (TypeError, OverflowError):
        return b"\xc1"


SENTINELS = {f"sentinel-{i}-f0a7": f"value-{i}" for i in range(20)}


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    cluster = LocalCluster(
        3, 1, data_dir=data_dir, storage="memory", extra_args=["--cluster-secret", SECRET]
    )
    try:
        cluster.start()
        cluster.install_view()
        metadata: object = {}
        for key, value in SENTINELS.items():
            response = http.put(cluster.nodes[0].address, key, value, metadata)
            assert response.status == 200
            metadata = response.body["causal-metadata"]
        yield cluster
    finally:
        cluster.stop()


def test_no_generated_request_causes_a_server_error(fuzz_cluster: LocalCluster) -> None:
    """Each operation of the description gets its own bounded hypothesis run."""
    from hypothesis import given

    api = schemathesis.openapi.from_dict(openapi_document())
    base_url = fuzz_cluster.nodes[1].url
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )

        run()
    assert operations >= 14
    assert not failures, failures[:10]


def test_data_and_nodes_survive_the_fuzzing(fuzz_cluster: LocalCluster) -> None:
    for node in fuzz_cluster.nodes:
        assert http.request(node.address, "GET", "/ping").status == 200
        status = http.request(node.address, "GET", "/status").body
        assert status["epoch"] == 1 and status["member"]
    for key, value in SENTINELS.items():
        for node in fuzz_cluster.nodes:
            response = http.get(node.address, key)
            assert response.status == 200 and response.body["value"] == value, (key, response.body)
