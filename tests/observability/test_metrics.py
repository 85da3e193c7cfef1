"""``GET /metrics`` on a real 6-node cluster: the numbers move as they should.

Requests are counted exactly per node, method, route and status; forwarded
requests match the relays the peers served; a forced causal wait (replication
held back on the writer, a read elsewhere carrying the write's metadata) shows
in the wait metrics and in the writer's replication lag; a view change moves the
epoch gauge and the hand-off figures. The view change runs last: it reshapes the
module's cluster.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from causalkv.core.placement import HashRing
from causalkv.local_cluster import LocalCluster, LocalNode
from tests.integration import http
from tests.observability.conftest import (
    Scrape,
    key_in_shard,
    scrape,
    shard_of,
    start_cluster,
    wait_until,
)

REQUESTS = "causalkv_http_requests_total"
DURATION = "causalkv_http_request_duration_seconds"


def test_metrics_are_prometheus_text_per_node(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        result = scrape(node)
        assert result.content_type.startswith("text/plain; version=0.0.4")
        assert result.headers.get("access-control-allow-origin") == "*"
        # Each node has a registry of its own: it reports its own identity and state.
        (info,) = result.labels_of("causalkv_node_info")
        assert info["node_id"] == node.node_id
        assert info["address"] == node.address
        assert result.value("causalkv_view_epoch") == 1
        assert result.value("causalkv_view_member") == 1
        assert result.value("causalkv_view_shards") == 2
        assert result.value("causalkv_view_nodes") == 6
        assert result.has("causalkv_shard_keys", shard=shard_of(cluster, node))
        assert result.has("process_cpu_seconds_total")
        shard_peers = [
            str(m["address"])
            for m in cluster.view_json()[shard_of(cluster, node)]
            if m["address"] != node.address
        ]

        def peers_up(node: LocalNode = node, shard_peers: list[str] = shard_peers) -> bool:
            return all(
                scrape(node).value("causalkv_peer_up", peer=peer) == 1 for peer in shard_peers
            )

        # Anti-entropy reaches every shard peer within a few rounds: each is reported up.
        assert wait_until(peers_up)
    openmetrics = http.request(
        cluster.nodes[0].address,
        "GET",
        "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.raw.rstrip().endswith(b"# EOF")


def test_a_scrape_is_counted_by_the_next_one(cluster: LocalCluster) -> None:
    node = cluster.nodes[2]
    first = scrape(node)
    second = scrape(node)
    labels = {"method": "GET", "route": "/metrics", "status": "200"}
    assert second.value(REQUESTS, **labels) - first.value(REQUESTS, **labels) == 1
    assert (
        second.value(f"{DURATION}_count", **labels) - first.value(f"{DURATION}_count", **labels)
        == 1
    )


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_load_is_counted_per_route_status_and_node(cluster: LocalCluster) -> None:
    """Drive a mixed load at every node and account for every request it made."""
    shards = sorted(cluster.view_json())
    ring = HashRing(shards)
    shard_by_address = {node.address: shard_of(cluster, node) for node in cluster.nodes}
    expected: dict[str, Counter[tuple[str, str, str]]] = {
        n.address: Counter() for n in cluster.nodes
    }
    expected_forwards: Counter[str] = Counter()
    writes = 0
    lock = threading.Lock()

    def session(seed: int) -> None:
        nonlocal writes
        rng = random.Random(seed)
        metadata: object = {}
        for step in range(60):
            node = rng.choice(cluster.nodes)
            key = f"load-{seed}-{rng.randrange(25)}"
            choice = step % 4
            if choice == 0:
                response = http.put(node.address, key, f"v{step}", metadata)
                route, method = "/data/{key}", "PUT"
            elif choice == 1:
                response = http.get(node.address, key, metadata)
                route, method = "/data/{key}", "GET"
            elif choice == 2:
                response = http.get(node.address, f"missing-{seed}-{step}", metadata)
                route, method = "/data/{key}", "GET"
            else:
                response = http.request(
                    node.address,
                    "PUT",
                    f"/kvs/data/{key}",
                    {"val": f"s{step}", "causal-metadata": metadata},
                )
                route, method = "/kvs/data/{key}", "PUT"
            assert response.status in (200, 201, 404), response.body
            metadata = response.body["causal-metadata"]
            owner = ring.shard_name_for(key if choice != 2 else f"missing-{seed}-{step}")
            with lock:
                expected[node.address][(method, route, str(response.status))] += 1
                if owner != shard_by_address[node.address]:
                    expected_forwards[node.address] += 1
                if method == "PUT":
                    writes += 1

    before = {node.address: scrape(node) for node in cluster.nodes}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(session, range(4)))
    after = {node.address: scrape(node) for node in cluster.nodes}

    assert sum(sum(c.values()) for c in expected.values()) == 240
    assert any(status == "404" for c in expected.values() for (_, _, status) in c)
    forwards_served = 0.0
    for node in cluster.nodes:
        b, a = before[node.address], after[node.address]
        for route in ("/data/{key}", "/kvs/data/{key}"):
            for method in ("GET", "PUT"):
                for status in ("200", "201", "404", "503"):
                    labels = {"method": method, "route": route, "status": status}
                    want = expected[node.address][(method, route, status)]
                    assert _delta(b, a, REQUESTS, **labels) == want, (node.address, labels)
                    assert _delta(b, a, f"{DURATION}_count", **labels) == want
                    bucket = _delta(b, a, f"{DURATION}_bucket", le="+Inf", **labels)
                    assert bucket == want
                    if want:
                        assert _delta(b, a, f"{DURATION}_sum", **labels) > 0
        assert _delta(b, a, "causalkv_forwarded_requests_total") == expected_forwards[node.address]
        assert _delta(b, a, "causalkv_forward_failures_total") == 0
        forwards_served += _delta(
            b, a, REQUESTS, method="POST", route="/kvs/internal/sync", status="200"
        )
    # Every relay was served by a replica of the key's shard as a peer call answered 200.
    assert forwards_served == sum(expected_forwards.values()) > 0
    accepted = sum(
        _delta(before[n.address], after[n.address], "causalkv_writes_accepted_total")
        for n in cluster.nodes
    )
    assert accepted == writes
    for node in cluster.nodes:
        result = after[node.address]
        shard = shard_by_address[node.address]
        assert result.value("causalkv_shard_keys", shard=shard) > 0
        assert result.value("causalkv_shard_value_bytes", shard=shard) > 0
        assert result.value("causalkv_anti_entropy_rounds_total") > 0
        assert result.value("causalkv_http_requests_in_flight") >= 1  # the scrape itself


def _hold(node: LocalNode, peers: object) -> None:
    response = http.request(node.address, "POST", "/debug/hold-outgoing", {"peers": peers})
    assert response.status == 200, response.body


def test_a_forced_causal_wait_shows_in_the_wait_metrics(cluster: LocalCluster) -> None:
    writer, reader = cluster.nodes[0], cluster.nodes[1]
    shard = shard_of(cluster, writer)
    assert shard_of(cluster, reader) == shard
    key = key_in_shard(shard, sorted(cluster.view_json()), "waited")
    _hold(writer, "all")
    try:
        put = http.put(writer.address, key, "after-the-wait")
        assert put.status == 200
        before = scrape(reader)
        got: list[http.Response] = []
        read = threading.Thread(
            target=lambda: got.append(http.get(reader.address, key, put.body["causal-metadata"]))
        )
        read.start()
        assert wait_until(lambda: scrape(reader).value("causalkv_causal_waiting_requests") == 1)
        time.sleep(1.0)
        during = scrape(reader)
        assert during.value("causalkv_causal_wait_oldest_seconds") >= 0.9
        assert _delta(before, during, "causalkv_causal_waits_total") == 1
        # The writer's own write is not confirmed by its peers while replication is held.
        lagging = scrape(writer)
        assert lagging.value("causalkv_replication_lag_seconds", peer=reader.address) >= 0.9
        assert lagging.value("causalkv_replication_unacknowledged_writes", peer=reader.address) >= 1
    finally:
        _hold(writer, [])
    read.join(30)
    assert got and got[0].status == 200 and got[0].body["value"] == "after-the-wait"
    after = scrape(reader)
    assert _delta(before, after, "causalkv_causal_waits_total") == 1
    assert _delta(before, after, "causalkv_causal_wait_timeouts_total") == 0
    assert after.value("causalkv_causal_waiting_requests") == 0
    assert after.value("causalkv_causal_wait_oldest_seconds") == 0
    labels = {"method": "GET", "route": "/data/{key}", "status": "200"}
    assert _delta(before, after, f"{DURATION}_bucket", le="0.5", **labels) == 0
    assert _delta(before, after, f"{DURATION}_bucket", le="+Inf", **labels) == 1
    if after.has("causalkv_causal_wait_duration_seconds_count"):  # the runtime's wait hook
        served = {"outcome": "served"}
        assert _delta(before, after, "causalkv_causal_wait_duration_seconds_count", **served) == 1
        assert _delta(before, after, "causalkv_causal_wait_duration_seconds_sum", **served) >= 0.9
        assert (
            _delta(
                before, after, "causalkv_causal_wait_duration_seconds_bucket", le="0.5", **served
            )
            == 0
        )
    # Once released, the peers catch up and confirm the write: the lag falls back to 0.
    assert wait_until(
        lambda: scrape(writer).value("causalkv_replication_lag_seconds") == 0, timeout_s=10
    )


def test_a_causal_wait_timeout_is_counted(tmp_path: Path) -> None:
    small = start_cluster(tmp_path, nodes=2, shards=1, extra=["--causal-wait-s", "1"])
    try:
        writer, reader = small.nodes
        _hold(writer, "all")
        put = http.put(writer.address, "timed-out", "never-seen")
        assert put.status == 200
        before = scrape(reader)
        started = time.monotonic()
        response = http.get(reader.address, "timed-out", put.body["causal-metadata"])
        assert response.status == 503
        assert time.monotonic() - started >= 0.9
        after = scrape(reader)
        assert _delta(before, after, "causalkv_causal_waits_total") == 1
        assert _delta(before, after, "causalkv_causal_wait_timeouts_total") == 1
        assert _delta(before, after, REQUESTS, method="GET", route="/data/{key}", status="503") == 1
        if after.has("causalkv_causal_wait_duration_seconds_count"):
            timeout = {"outcome": "timeout"}
            assert (
                _delta(before, after, "causalkv_causal_wait_duration_seconds_count", **timeout) == 1
            )
            assert (
                _delta(before, after, "causalkv_causal_wait_duration_seconds_sum", **timeout) >= 0.9
            )
    finally:
        small.stop()


def test_dashboard_json_covers_the_cluster(cluster: LocalCluster) -> None:
    key = key_in_shard("s2", ["s1", "s2"], "dash")
    assert http.put(cluster.nodes[0].address, key, "shown").status == 200
    response = http.request(cluster.nodes[0].address, "GET", "/dashboard/api/cluster")
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "*"
    document = response.body
    assert document["epoch"] == 1
    assert [n["address"] for n in document["nodes"]] == [n.address for n in cluster.nodes]
    assert all(n["up"] for n in document["nodes"])
    assert sorted(document["ring"]["shards"]) == ["s1", "s2"]
    assert abs(sum(document["ring"]["share"].values()) - 1) < 1e-9
    assert len(document["ring"]["bins"]) == 360
    for node in document["nodes"]:
        snapshot = node["snapshot"]
        assert snapshot["epoch"] == 1
        assert "requests" in snapshot["dashboard"]
        assert snapshot["dashboard"]["writer"].startswith("e1.")
    assert wait_until(
        lambda: (
            (
                found := http.request(
                    cluster.nodes[0].address, "GET", f"/dashboard/api/key?key={key}"
                )
            )
            is not None
            and found.body["agree"]
            and all(r["data"]["value"] == "shown" for r in found.body["replicas"])
        )
    )
    found = http.request(cluster.nodes[0].address, "GET", f"/dashboard/api/key?key={key}")
    assert found.body["shard"] == "s2"
    assert sorted(r["address"] for r in found.body["replicas"]) == sorted(
        str(m["address"]) for m in cluster.view_json()["s2"]
    )
    page = http.request(cluster.nodes[3].address, "GET", "/dashboard")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.raw.decode()
    # Self-contained: nothing is loaded from anywhere else (the machine may be offline).
    assert "<script src" not in text and "stylesheet" not in text and "https://" not in text
    assert http.request(cluster.nodes[0].address, "GET", "/dashboard/api/key").status == 400


def test_a_view_change_moves_the_epoch_and_hand_off_metrics(cluster: LocalCluster) -> None:
    for index in range(60):
        assert http.put(cluster.nodes[index % 6].address, f"moving-{index}", "x" * 50).status == 200
    before = {node.address: scrape(node) for node in cluster.nodes}
    epoch = before[cluster.nodes[0].address].value("causalkv_view_epoch")
    cluster.install_view(cluster.view_json(shards=3))

    def settled() -> bool:
        scrapes = [scrape(node) for node in cluster.nodes]
        return all(
            s.value("causalkv_view_epoch") == epoch + 1
            and s.value("causalkv_view_change_in_progress") == 0
            and s.value("causalkv_handoff_progress_ratio") == 1
            for s in scrapes
        )

    assert wait_until(settled, timeout_s=30)
    after = {node.address: scrape(node) for node in cluster.nodes}
    moved_out = moved_in = 0.0
    for node in cluster.nodes:
        b, a = before[node.address], after[node.address]
        assert a.value("causalkv_view_shards") == 3
        assert _delta(b, a, "causalkv_view_changes_total") == 1
        moved_out += _delta(b, a, "causalkv_keys_transferred_out_total")
        moved_in += _delta(b, a, "causalkv_keys_transferred_in_total")
        if a.value("causalkv_handoff_transfers") > 0:
            assert a.value("causalkv_handoff_epoch") == epoch + 1
            assert a.value("causalkv_handoff_transfers_acked") == a.value(
                "causalkv_handoff_transfers"
            )
            assert a.value("causalkv_handoff_versions_acked") == a.value(
                "causalkv_handoff_versions"
            )
    assert moved_out > 0 and moved_in > 0
    node = http.request(cluster.nodes[0].address, "GET", "/dashboard/api/node").body
    assert node["dashboard"]["view_history"][-1]["epoch"] == epoch + 1
    assert node["dashboard"]["view_history"][-1]["shards"] == 3
