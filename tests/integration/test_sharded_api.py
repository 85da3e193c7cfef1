"""SPEC §3, §5, §6 checked from outside against 6 real node processes in 2 shards:
forwarding from every node, shard-local listings that partition the keyspace,
404s, every kind of 400, 503 before a view, blocking on an unmet dependency,
bounded metadata, and convergence of concurrent writes."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from causalkv.core.token import decode_token
from causalkv.core.view import View, parse_sharded_view
from causalkv.local_cluster import LocalCluster
from tests.integration import http

_keys = itertools.count()


def fresh_key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}-{time.monotonic_ns()}"


def installed_view(cluster: LocalCluster) -> View:
    response = http.request(cluster.nodes[0].address, "GET", "/view")
    return parse_sharded_view(response.body["view"])


def owners(cluster: LocalCluster, key: str) -> list[str]:
    view = installed_view(cluster)
    return list(view.replicas(view.shard_index_for_key(key)))


def test_before_a_view_data_requests_answer_503(fresh_cluster: LocalCluster) -> None:
    node = fresh_cluster.nodes[0].address
    assert http.request(node, "GET", "/ping").status == 200
    assert http.request(node, "GET", "/view").body == {"view": {}}
    for response in (
        http.put(node, "k", "v"),
        http.get(node, "k"),
        http.delete(node, "k"),
        http.listing(node),
    ):
        assert response.status == 503, response.body
        assert "error" in response.body


@pytest.mark.parametrize(
    "body",
    [
        {"view": {}},
        {"view": {"s1": []}},
        {
            "view": {
                "s1": [{"address": "127.0.0.1:1", "id": 1}, {"address": "127.0.0.1:1", "id": 2}]
            }
        },
        {
            "view": {
                "s1": [{"address": "127.0.0.1:1", "id": 1}],
                "s2": [{"address": "127.0.0.1:2", "id": 1}],
            }
        },
        {"view": {"s1": [{"address": "no-port", "id": 1}]}},
        {"view": {"s1": [{"id": 1}]}},
        {"view": {"s1": [{"address": "127.0.0.1:1", "id": True}]}},
        {"view": "s1"},
        {"not-view": {}},
        [1, 2],
    ],
)
def test_malformed_views_are_refused(fresh_cluster: LocalCluster, body: object) -> None:
    response = http.request(fresh_cluster.nodes[0].address, "PUT", "/view", body)
    assert response.status == 400, response.body
    assert "error" in response.body
    assert http.request(fresh_cluster.nodes[0].address, "GET", "/view").body == {"view": {}}


def test_view_is_the_same_everywhere(cluster: LocalCluster) -> None:
    views = [http.request(n.address, "GET", "/view").body for n in cluster.nodes]
    assert all(view == views[0] for view in views)
    assert views[0]["view"] == cluster.view_json()


def test_reinstalling_the_same_view_is_immediate(cluster: LocalCluster) -> None:
    started = time.monotonic()
    response = http.request(cluster.nodes[3].address, "PUT", "/view", {"view": cluster.view_json()})
    assert response.status == 200
    assert time.monotonic() - started < 2.0
    epochs = {http.request(n.address, "GET", "/status").body["epoch"] for n in cluster.nodes}
    assert len(epochs) == 1


def test_any_node_serves_any_key(cluster: LocalCluster) -> None:
    nodes = [n.address for n in cluster.nodes]
    written = {}
    for index, writer in enumerate(nodes * 3):
        key = fresh_key("fwd")
        response = http.put(writer, key, f"value-{index}")
        assert response.status == 200, response.body
        written[key] = (f"value-{index}", response.body["causal-metadata"])
    for key, (value, metadata) in written.items():
        for reader in nodes:
            response = http.get(reader, key, metadata)
            assert response.status == 200, (reader, key, response.body)
            assert response.body["value"] == value


def test_listings_partition_the_keyspace(cluster: LocalCluster) -> None:
    metadata: object = {}
    keys = {fresh_key("list"): f"v{i}" for i in range(60)}
    for index, (key, value) in enumerate(keys.items()):
        response = http.put(cluster.nodes[index % 6].address, key, value, metadata)
        metadata = response.body["causal-metadata"]
    view = installed_view(cluster)
    seen: dict[str, str] = {}
    for shard_index in range(len(view.shards)):
        replicas = view.replicas(shard_index)
        listings = [http.listing(a, metadata).body["items"] for a in replicas]
        assert all(items == listings[0] for items in listings), "replicas of a shard disagree"
        items = {k: v for k, v in listings[0].items() if k in keys}
        assert not (seen.keys() & items.keys()), "a key is listed by two shards"
        for key in items:
            assert view.shard_index_for_key(key) == shard_index
        seen.update(items)
    assert seen == keys


def test_missing_keys_are_404_with_metadata(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        key = fresh_key("missing")
        response = http.get(node.address, key)
        assert response.status == 404 and response.body == {"causal-metadata": {}}
        response = http.delete(node.address, key)
        assert response.status == 404 and "causal-metadata" in response.body


def test_delete_hides_the_key_everywhere(cluster: LocalCluster) -> None:
    key = fresh_key("del")
    written = http.put(cluster.nodes[0].address, key, "v")
    deleted = http.delete(cluster.nodes[5].address, key, written.body["causal-metadata"])
    assert deleted.status == 200
    for node in cluster.nodes:
        response = http.get(node.address, key, deleted.body["causal-metadata"])
        assert response.status == 404
    again = http.put(cluster.nodes[2].address, key, "back", deleted.body["causal-metadata"])
    assert (
        http.get(cluster.nodes[4].address, key, again.body["causal-metadata"]).body["value"]
        == "back"
    )


def test_get_and_delete_without_a_body_work(cluster: LocalCluster) -> None:
    key = fresh_key("nobody")
    http.put(cluster.nodes[0].address, key, "v")
    address = owners(cluster, key)[0]
    deadline = time.monotonic() + 5
    while http.request(address, "GET", f"/data/{key}").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    response = http.request(address, "GET", f"/data/{key}")
    assert response.body["value"] == "v"
    assert http.request(address, "DELETE", f"/data/{key}").status == 200
    assert http.request(address, "GET", "/data").status == 200


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("PUT", "/data/k", b"{not json"),
        ("PUT", "/data/k", b"[1, 2]"),
        ("PUT", "/data/k", b'{"causal-metadata": {}}'),
        ("PUT", "/data/k", b'{"value": 5, "causal-metadata": {}}'),
        ("PUT", "/data/k", b'{"value": null, "causal-metadata": {}}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": 7}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": "abc"}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": [1]}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": {"foo": 1}}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": {"c": "!!!"}}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": {"c": "AAAA"}}'),
        ("GET", "/data/k", b"{broken"),
        ("GET", "/data/k", b'{"causal-metadata": 3}'),
        ("DELETE", "/data/k", b'"string"'),
        ("GET", "/data", b'{"causal-metadata": [true]}'),
        ("PUT", "/data/", b'{"value": "v", "causal-metadata": {}}'),
        ("PUT", "/data/%FF%FE", b'{"value": "v", "causal-metadata": {}}'),
        ("PUT", "/data/k", b'{"value": "v", "causal-metadata": {"c": {"c": {"c": {"c": 1}}}}}'),
    ],
)
def test_malformed_requests_are_400_with_a_reason(
    cluster: LocalCluster, method: str, path: str, raw: bytes
) -> None:
    response = http.request(cluster.nodes[1].address, method, path, raw=raw)
    assert response.status == 400, (response.status, response.body)
    assert isinstance(response.body, dict) and response.body.get("error")


def test_size_limits(cluster: LocalCluster) -> None:
    node = cluster.nodes[0].address
    long_key = "k" * 2049
    assert http.put(node, long_key, "v").status == 400
    assert http.put(node, "k" * 2048, "v").status == 200
    multibyte_key = "é" * 1025  # 2050 bytes in UTF-8
    assert http.put(node, multibyte_key, "v").status == 400
    big = "x" * (8 * 1024 * 1024 + 1)
    assert http.put(node, fresh_key("big"), big).status == 400
    assert http.put(node, fresh_key("big"), big[:-1]).status == 200
    huge = b'{"value": "' + b"x" * (40 * 1024 * 1024) + b'", "causal-metadata": {}}'
    response = http.request(node, "PUT", "/data/huge", raw=huge)
    assert response.status in (400, 413)


def test_the_node_survives_garbage(cluster: LocalCluster) -> None:
    node = cluster.nodes[2].address
    for raw in (b"\x00\xff" * 100, b"{" * 10000, b"[" * 100000, b"\xc3\x28"):
        assert http.request(node, "PUT", "/data/g", raw=raw).status == 400
    assert http.request(node, "POST", "/data/g").status == 405
    assert http.request(node, "GET", "/nowhere").status == 404
    assert http.request(node, "POST", "/kvs/internal/sync", raw=b"garbage").status == 400
    assert http.request(node, "GET", "/ping").status == 200


def test_unmet_dependency_blocks_until_it_arrives(cluster: LocalCluster) -> None:
    key = fresh_key("dep")
    source, reader, third = owners(cluster, key)
    http.request(source, "POST", "/debug/hold-outgoing", {"peers": "all"})
    try:
        written = http.put(source, key, "v")
        assert written.status == 200
        outcome: dict[str, object] = {}

        def read() -> None:
            started = time.monotonic()
            response = http.get(reader, key, written.body["causal-metadata"], timeout_s=30)
            outcome.update(
                status=response.status, body=response.body, took=time.monotonic() - started
            )

        thread = threading.Thread(target=read)
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive(), f"the read did not wait: {outcome}"
        assert http.get(third, key).status == 404, "the write escaped the hold"
    finally:
        http.request(source, "POST", "/debug/hold-outgoing", {"peers": []})
    thread.join(10)
    assert outcome["status"] == 200 and outcome["body"]["value"] == "v"  # type: ignore[index]
    assert 1.4 < outcome["took"] < 10  # type: ignore[operator]


def test_dependency_on_another_shard_is_honoured(cluster: LocalCluster) -> None:
    view = installed_view(cluster)
    key_a = next(
        k for k in (fresh_key("a") for _ in range(100)) if view.shard_index_for_key(k) == 0
    )
    key_b = next(
        k for k in (fresh_key("b") for _ in range(100)) if view.shard_index_for_key(k) == 1
    )
    source_a = owners(cluster, key_a)[0]
    held = http.request(source_a, "POST", "/debug/hold-outgoing", {"peers": "all"})
    assert held.status == 200
    try:
        first = http.put(source_a, key_a, "cause")
        second = http.put(owners(cluster, key_b)[0], key_b, "effect", first.body["causal-metadata"])
        # A reader that sees the effect inherits the cause, even though it has never seen it.
        effect = http.get(owners(cluster, key_b)[1], key_b, second.body["causal-metadata"])
        assert effect.body["value"] == "effect"
        inherited = effect.body["causal-metadata"]
        assert (
            decode_token(first.body["causal-metadata"]).clock.items()
            <= decode_token(inherited).clock.items()
        )
        result: dict[str, object] = {}
        thread = threading.Thread(
            target=lambda: result.update(r=http.get(owners(cluster, key_a)[1], key_a, inherited))
        )
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), (
            "the reader saw the effect but not yet the cause, and did not wait"
        )
    finally:
        http.request(source_a, "POST", "/debug/hold-outgoing", {"peers": []})
    thread.join(10)
    response = result["r"]
    assert isinstance(response, http.Response) and response.body["value"] == "cause"


def test_metadata_stays_small_after_thousands_of_writes(cluster: LocalCluster) -> None:
    metadata: object = {}
    sizes = []
    nodes = [n.address for n in cluster.nodes]
    for index in range(3000):
        response = http.put(nodes[index % 6], f"meta-{index % 200}", str(index), metadata)
        assert response.status == 200
        metadata = response.body["causal-metadata"]
        if index % 500 == 499:
            sizes.append(len(str(metadata)))
    writers = len(decode_token(metadata).clock)
    assert writers <= 6
    # Bounded by the writers, not the operations: the last size is no larger than
    # the size once every writer had been seen.
    assert sizes[-1] <= 16 * writers + 40, sizes
    assert max(sizes) == sizes[-1] or max(sizes) - min(sizes) <= 8


def test_concurrent_writes_to_one_key_converge(cluster: LocalCluster) -> None:
    key = fresh_key("race")
    nodes = [n.address for n in cluster.nodes]
    barrier = threading.Barrier(12)

    def writer(index: int) -> None:
        barrier.wait()
        for round_number in range(10):
            http.put(nodes[index % 6], key, f"w{index}-{round_number}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 10
    while True:
        values = {http.get(replica, key).body.get("value") for replica in owners(cluster, key)}
        if len(values) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(values) == 1, values
    assert values.pop() is not None
