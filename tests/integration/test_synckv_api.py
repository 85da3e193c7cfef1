"""SPEC §4 (the SyncKV dialect) from outside, row by row, on real node processes:
418 before a view, 201 vs 200, 404 bodies, sorted listings, 400s, view growth and
shrink with reset, the stall-then-500 path, both dialects agreeing on one
cluster, and the seed README's walkthrough (minus docker)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from causalkv.local_cluster import LocalCluster, free_ports, http_json, wait_for_ping
from tests.integration import http

DEPENDENCY_TIMEOUT = {"error": "timed out while waiting for depended updates"}


def kvs_put(
    address: str, key: str, value: str, metadata: object = None, **kwargs: object
) -> http.Response:
    return http.request(
        address,
        "PUT",
        f"/kvs/data/{key}",
        {"val": value, "causal-metadata": metadata or {}},
        **kwargs,  # type: ignore[arg-type]
    )


def kvs_get(address: str, key: str, metadata: object = None, **kwargs: object) -> http.Response:
    return http.request(
        address, "GET", f"/kvs/data/{key}", {"causal-metadata": metadata or {}}, **kwargs
    )  # type: ignore[arg-type]


def kvs_delete(address: str, key: str, metadata: object = None) -> http.Response:
    return http.request(address, "DELETE", f"/kvs/data/{key}", {"causal-metadata": metadata or {}})


def set_view(address: str, addresses: list[str]) -> http.Response:
    return http.request(address, "PUT", "/kvs/admin/view", {"view": addresses}, timeout_s=60)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(
        3,
        1,
        data_dir=tmp_path,
        storage="memory",
        extra_args=["--test-hooks", "--causal-wait-s", "3"],
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def test_uninitialized_nodes_answer_418(nodes: LocalCluster) -> None:
    node = nodes.nodes[0].address
    assert http.request(node, "GET", "/kvs/admin/view").body == {"view": []}
    for response in (
        kvs_put(node, "k", "v"),
        kvs_get(node, "k"),
        kvs_delete(node, "k"),
        http.request(node, "GET", "/kvs/data"),
    ):
        assert response.status == 418 and response.body == {"error": "uninitialized"}


def test_every_row_of_the_data_table(nodes: LocalCluster) -> None:
    a, b, c = (n.address for n in nodes.nodes)
    assert set_view(a, [c, a, b]).status == 200
    for node in (a, b, c):
        assert http.request(node, "GET", "/kvs/admin/view").body == {"view": [c, a, b]}
    created = kvs_put(a, "x", "1")
    assert created.status == 201 and set(created.body) == {"causal-metadata"}
    updated = kvs_put(b, "x", "2", created.body["causal-metadata"])
    assert updated.status == 200
    read = kvs_get(c, "x", updated.body["causal-metadata"])
    assert read.status == 200 and read.body["val"] == "2" and "causal-metadata" in read.body
    missing = kvs_get(a, "nothing")
    assert missing.status == 404 and set(missing.body) == {"causal-metadata"}
    assert kvs_delete(a, "nothing").status == 404
    deleted = kvs_delete(c, "x", read.body["causal-metadata"])
    assert deleted.status == 200 and "causal-metadata" in deleted.body
    assert kvs_get(a, "x", deleted.body["causal-metadata"]).status == 404
    recreated = kvs_put(a, "x", "3", deleted.body["causal-metadata"])
    assert recreated.status == 201, "no live value is in the write's causal past after a delete"
    metadata = recreated.body["causal-metadata"]
    for key in ("zeta", "alpha", "mid"):
        metadata = kvs_put(b, key, key, metadata).body["causal-metadata"]
    listing = http.request(c, "GET", "/kvs/data", {"causal-metadata": metadata})
    assert listing.status == 200
    assert listing.body["keys"] == ["alpha", "mid", "x", "zeta"]
    assert listing.body["count"] == 4 and "causal-metadata" in listing.body


@pytest.mark.parametrize(
    "raw",
    [
        b"{oops",
        b"[]",
        b'{"causal-metadata": {}}',
        b'{"val": "v"}',
        b'{"val": 3, "causal-metadata": {}}',
        b'{"val": "v", "causal-metadata": 3}',
        b'{"val": "v", "causal-metadata": {"c": "%%%"}}',
    ],
)
def test_bad_requests_say_bad_request(nodes: LocalCluster, raw: bytes) -> None:
    a = nodes.nodes[0].address
    assert set_view(a, [a]).status == 200
    response = http.request(a, "PUT", "/kvs/data/k", raw=raw)
    assert response.status == 400 and response.body == {"error": "bad request"}


def test_extra_keys_are_fine_and_big_values_are_refused(nodes: LocalCluster) -> None:
    a = nodes.nodes[0].address
    assert set_view(a, [a]).status == 200
    ok = http.request(a, "PUT", "/kvs/data/k", {"val": "v", "causal-metadata": {}, "extra": [1]})
    assert ok.status == 201
    too_large = kvs_put(a, "big", "v" * (8 * 1024 * 1024 + 1))
    assert too_large.status == 400 and too_large.body == {"error": "val too large"}
    huge = b'{"val": "' + b"v" * (20 * 1024 * 1024) + b'", "causal-metadata": {}}'
    response = http.request(a, "PUT", "/kvs/data/huge", raw=huge)
    assert response.status == 400 and response.body == {"error": "val too large"}
    assert kvs_put(a, "edge", "v" * (8 * 1024 * 1024)).status == 201


def test_views_grow_shrink_and_reset(nodes: LocalCluster) -> None:
    a, b, c = (n.address for n in nodes.nodes)
    assert set_view(a, [a, b]).status == 200
    metadata: object = {}
    for index in range(30):
        metadata = kvs_put(a if index % 2 else b, f"key{index}", f"v{index}", metadata).body[
            "causal-metadata"
        ]
    assert http.request(c, "GET", "/kvs/data").status == 418
    # Grow: the added node gets a copy of the store.
    assert set_view(b, [a, b, c]).status == 200
    listing = http.request(c, "GET", "/kvs/data", {"causal-metadata": metadata})
    assert listing.body["count"] == 30
    assert kvs_get(c, "key7", metadata).body["val"] == "v7"
    # Shrink: the removed node resets and answers 418.
    assert set_view(c, [c, a]).status == 200
    assert http.request(b, "GET", "/kvs/admin/view").body == {"view": []}
    assert kvs_get(b, "key7").status == 418
    assert http.request(a, "GET", "/kvs/admin/view").body == {"view": [c, a]}
    assert http.request(c, "GET", "/kvs/data", {"causal-metadata": metadata}).body["count"] == 30
    # Reset by hand.
    assert http.request(a, "DELETE", "/kvs/admin/view").status == 200
    assert kvs_get(a, "key7").status == 418
    assert http.request(a, "GET", "/kvs/admin/view").body == {"view": []}


def test_stall_then_500_when_replication_is_held_back(nodes: LocalCluster) -> None:
    a, b, _ = (n.address for n in nodes.nodes)
    assert set_view(a, [a, b]).status == 200
    http.request(a, "POST", "/debug/hold-outgoing", {"peers": "all"})
    try:
        written = kvs_put(a, "held", "v")
        started = time.monotonic()
        response = kvs_get(b, "held", written.body["causal-metadata"], timeout_s=30)
        waited = time.monotonic() - started
        assert response.status == 500 and response.body == DEPENDENCY_TIMEOUT
        assert 2.5 <= waited <= 8, waited
    finally:
        http.request(a, "POST", "/debug/hold-outgoing", {"peers": []})
    # Released, the same read succeeds.
    assert kvs_get(b, "held", written.body["causal-metadata"]).body["val"] == "v"


def test_stall_is_released_by_replication(nodes: LocalCluster) -> None:
    a, b, _ = (n.address for n in nodes.nodes)
    assert set_view(a, [a, b]).status == 200
    http.request(a, "POST", "/debug/hold-outgoing", {"peers": "all"})
    written = kvs_put(a, "later", "v")
    result: dict[str, http.Response] = {}
    thread = threading.Thread(
        target=lambda: result.update(r=kvs_get(b, "later", written.body["causal-metadata"]))
    )
    thread.start()
    # Release replication only once the read is actually waiting on b.
    deadline = time.monotonic() + 10
    while http.request(b, "GET", "/status").body["waiting_requests"] < 1:
        assert time.monotonic() < deadline, "the read never started waiting"
        time.sleep(0.02)
    http.request(a, "POST", "/debug/hold-outgoing", {"peers": []})
    thread.join(10)
    assert result["r"].status == 200 and result["r"].body["val"] == "v"


def test_both_dialects_agree_on_one_cluster(nodes: LocalCluster) -> None:
    a, b, c = (n.address for n in nodes.nodes)
    assert set_view(a, [a, b, c]).status == 200
    via_kvs = kvs_put(a, "shared", "from-kvs")
    read_sharded = http.get(b, "shared", via_kvs.body["causal-metadata"])
    assert read_sharded.status == 200 and read_sharded.body["value"] == "from-kvs"
    via_data = http.put(c, "shared", "from-data", read_sharded.body["causal-metadata"])
    read_kvs = kvs_get(a, "shared", via_data.body["causal-metadata"])
    assert read_kvs.status == 200 and read_kvs.body["val"] == "from-data"
    sharded_view = http.request(a, "GET", "/view").body["view"]
    assert [node["address"] for nodes_ in sharded_view.values() for node in nodes_] == [a, b, c]
    items = http.listing(b, read_kvs.body["causal-metadata"]).body["items"]
    keys = http.request(
        c, "GET", "/kvs/data", {"causal-metadata": read_kvs.body["causal-metadata"]}
    )
    assert sorted(items) == keys.body["keys"]


def test_concurrent_siblings_are_observable(nodes: LocalCluster) -> None:
    a, b, _ = (n.address for n in nodes.nodes)
    assert set_view(a, [a, b]).status == 200
    for node in (a, b):
        http.request(node, "POST", "/debug/hold-outgoing", {"peers": "all"})
    try:
        kvs_put(a, "conflict", "left")
        kvs_put(b, "conflict", "right")
    finally:
        for node in (a, b):
            http.request(node, "POST", "/debug/hold-outgoing", {"peers": []})
    deadline = time.monotonic() + 5
    while True:
        values = {kvs_get(node, "conflict").body.get("val") for node in (a, b)}
        if len(values) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(values) == 1, "replicas must converge on one value"
    response = http.request(a, "GET", "/kvs/data/conflict?siblings=1", {"causal-metadata": {}})
    assert response.status == 200
    assert sorted(s["val"] for s in response.body["siblings"]) == ["left", "right"]
    assert response.body["siblings"][0]["val"] == response.body["val"]


def test_seed_walkthrough(tmp_path: Path) -> None:
    """The SyncKV README's steps, with a local process in place of `docker run -p
    8001:8080 -e NODE_ID=A synckv`: the node listens on a port and is reached as
    localhost:<port>, exactly like the published port."""
    (port,) = free_ports(1)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CAUSALKV_")}
    environment.update(NODE_ID="A", PORT=str(port), CAUSALKV_DATA_DIR=str(tmp_path / "data"))
    process = subprocess.Popen(
        [sys.executable, "-m", "causalkv", "serve"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://localhost:{port}"
    try:
        wait_for_ping(base)
        status, body = http_json("PUT", f"{base}/kvs/admin/view", {"view": [f"localhost:{port}"]})
        assert status == 200, body
        status, body = http_json(
            "PUT", f"{base}/kvs/data/greeting", {"val": "hello", "causal-metadata": {}}
        )
        assert status == 201, body
        status, body = http_json("GET", f"{base}/kvs/data/greeting", {"causal-metadata": {}})
        assert status == 200 and body["val"] == "hello"
    finally:
        process.terminate()
        process.wait(10)


def test_nodes_recognise_themselves_under_unconfigured_names(tmp_path: Path) -> None:
    """A view may name nodes by addresses they were never told (DNS names in
    Compose or Kubernetes): the node that receives the view finds itself by
    asking each address for its /status and recognising its own instance."""
    ports = free_ports(3)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CAUSALKV_", "NODE"))}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "causalkv",
                "serve",
                "--listen",
                f"0.0.0.0:{port}",
                "--node-id",
                f"n{index}",
                "--storage",
                "memory",
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, port in enumerate(ports)
    ]
    names = [f"127.0.0.2:{port}" for port in ports]
    try:
        for port in ports:
            wait_for_ping(f"http://127.0.0.1:{port}")
        status, body = http_json(
            "PUT", f"http://127.0.0.1:{ports[0]}/kvs/admin/view", {"view": names}, timeout_s=60
        )
        assert status == 200, body
        for port in ports:
            _, view = http_json("GET", f"http://127.0.0.1:{port}/kvs/admin/view")
            assert view == {"view": names}
        written = kvs_put(f"127.0.0.1:{ports[1]}", "named", "v")
        assert written.status == 201
        read = kvs_get(f"127.0.0.1:{ports[2]}", "named", written.body["causal-metadata"])
        assert read.status == 200 and read.body["val"] == "v"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
