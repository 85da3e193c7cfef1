"""Security and hostile input on real processes: the cluster secret guards every
admin and internal endpoint (401 without it, 403 with a wrong one, and a refused
request never reaches the core), the optional client token guards data, TLS
between clients and nodes and between nodes, the loud warning without a
secret, and limits that keep a flooded node responsive with bounded memory."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from causalkv.local_cluster import LocalCluster, free_ports
from causalkv.runtime.peer_protocol import encoder
from tests.integration import http

SECRET = "correct-horse-battery-staple"
AUTH = {"Authorization": f"Bearer {SECRET}"}
WRONG = {"Authorization": "Bearer not-the-secret"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        3,
        1,
        data_dir=tmp_path_factory.mktemp("secured"),
        storage="memory",
        extra_args=["--cluster-secret", SECRET, "--test-hooks", "--client-token", "client-token-1"],
    )
    try:
        cluster.start()
        cluster.install_view()
        yield cluster
    finally:
        cluster.stop()


CLIENT = {"Authorization": "Bearer client-token-1"}


def forged_envelope(sender: str, destination: str) -> bytes:
    return encoder.encode(
        {
            "type": "envelope",
            "envelope": {"sender": sender, "destination": destination, "epoch": 99, "messages": []},
        }
    )


ADMIN_ENDPOINTS = [
    ("PUT", "/view", json.dumps({"view": {"s1": [{"address": "10.9.9.9:1", "id": 9}]}}).encode()),
    ("PUT", "/kvs/admin/view", json.dumps({"view": ["10.9.9.9:1"]}).encode()),
    ("DELETE", "/kvs/admin/view", b""),
    ("POST", "/debug/hold-outgoing", json.dumps({"peers": "all"}).encode()),
]


@pytest.mark.parametrize(("method", "path", "raw"), ADMIN_ENDPOINTS)
def test_admin_endpoints_need_the_secret(
    secured: LocalCluster, method: str, path: str, raw: bytes
) -> None:
    node = secured.nodes[0].address
    before = http.request(node, "GET", "/status").body
    missing = http.request(node, method, path, raw=raw)
    assert missing.status == 401 and missing.body == {"error": "missing credentials"}
    wrong = http.request(node, method, path, raw=raw, headers=WRONG)
    assert wrong.status == 403 and wrong.body == {"error": "wrong credentials"}
    after = http.request(node, "GET", "/status").body
    assert after["epoch"] == before["epoch"] and after["view"] == before["view"]
    assert after["counters"] == {
        **before["counters"],
        "anti_entropy_rounds": after["counters"]["anti_entropy_rounds"],
    }


def test_internal_sync_needs_the_secret_and_refusals_never_reach_the_core(
    secured: LocalCluster,
) -> None:
    node = secured.nodes[1].address
    forged = forged_envelope("10.6.6.6:1", node)
    for headers, status in (({}, 401), (WRONG, 403)):
        response = http.request(node, "POST", "/kvs/internal/sync", raw=forged, headers=headers)
        assert response.status == status
    status = http.request(node, "GET", "/status").body
    assert "10.6.6.6:1" not in status["peers"], (
        "a refused envelope must not reach the transport or core"
    )
    accepted = http.request(node, "POST", "/kvs/internal/sync", raw=forged, headers=AUTH)
    assert accepted.status == 204


def test_the_secret_is_accepted_where_it_is_needed(secured: LocalCluster) -> None:
    node = secured.nodes[0].address
    same_view = {"view": secured.view_json()}
    assert http.request(node, "PUT", "/view", same_view, headers=AUTH).status == 200
    held = http.request(node, "POST", "/debug/hold-outgoing", {"peers": []}, headers=AUTH)
    assert held.status == 200


def test_nodes_replicate_with_the_secret(secured: LocalCluster) -> None:
    first, second, third = (n.address for n in secured.nodes)
    written = http.put(first, "replicated", "v", headers=CLIENT)
    assert written.status == 200
    deadline = time.monotonic() + 10
    while (
        http.request(third, "GET", "/inspect/key/replicated", headers=CLIENT).body["value"] != "v"
    ):
        assert time.monotonic() < deadline, "replication failed with a cluster secret"
        time.sleep(0.05)
    read = http.get(second, "replicated", written.body["causal-metadata"], headers=CLIENT)
    assert read.status == 200 and read.body["value"] == "v"


def test_the_client_token_guards_data(secured: LocalCluster) -> None:
    node = secured.nodes[2].address
    assert http.put(node, "guarded", "v").status == 401
    assert http.put(node, "guarded", "v", headers={"Authorization": "Bearer nope"}).status == 403
    assert http.put(node, "guarded", "v", headers=CLIENT).status == 200
    assert http.request(node, "GET", "/kvs/data").status == 401
    assert http.request(node, "GET", "/data", headers=CLIENT).status == 200
    assert http.request(node, "GET", "/ping").status == 200


def test_no_secret_beyond_loopback_warns_loudly(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "causalkv", "serve", "--listen", f"0.0.0.0:{port}",
         "--node-id", "1", "--storage", "memory"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline() if process.stderr else ""
            lines.append(line)
            if "NO CLUSTER SECRET" in line:
                break
        assert any(
            "NO CLUSTER SECRET" in line and ("WARNING" in line or '"level":"warning"' in line)
            for line in lines
        ), lines
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_tls_between_clients_and_nodes_and_between_nodes(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "node.pem", tmp_path / "node.key", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_path))
    certificate.private_key_pem.write_to_path(str(key_path))
    authority.cert_pem.write_to_path(str(ca_path))
    ports = free_ports(3)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "causalkv",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--node-id",
                str(index),
                "--storage",
                "memory",
                "--tls-certificate",
                str(cert_path),
                "--tls-key",
                str(key_path),
                "--tls-ca",
                str(ca_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, port in enumerate(ports, start=1)
    ]
    context = ssl.create_default_context(cafile=str(ca_path))

    def call(
        port: int, method: str, path: str, body: object = None
    ) -> tuple[int, dict[str, object]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())

    try:
        for port in ports:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if call(port, "GET", "/ping")[0] == 200:
                        break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        view = {
            "s1": [{"address": f"127.0.0.1:{port}", "id": i} for i, port in enumerate(ports, 1)]
        }
        assert call(ports[0], "PUT", "/view", {"view": view})[0] == 200
        status, body = call(
            ports[1], "PUT", "/data/secret", {"value": "over tls", "causal-metadata": {}}
        )
        assert status == 200
        status, read = call(
            ports[2], "GET", "/data/secret", {"causal-metadata": body["causal-metadata"]}
        )
        assert status == 200 and read["value"] == "over tls"
        plain = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{ports[0]}/ping"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert plain.stdout != "200", "plain HTTP must not be served when TLS is on"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


async def _flood(address: str, requests: list[bytes], hold_s: float) -> list[int]:
    host, _, port = address.rpartition(":")

    async def one(raw: bytes) -> int:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return -1
        try:
            writer.write(raw)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), hold_s)
            return int(line.split()[1]) if line else -1
        except (OSError, TimeoutError, IndexError, ValueError):
            return -2
        finally:
            writer.close()

    return list(await asyncio.gather(*(one(raw) for raw in requests)))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_flood_beyond_the_limits_keeps_the_node_responsive(tmp_path: Path) -> None:
    cluster = LocalCluster(
        2, 1, data_dir=tmp_path, storage="memory",
        extra_args=["--test-hooks", "--concurrent-requests-max", "64",
                    "--waiting-requests-max", "32", "--causal-wait-s", "6"],
    )  # fmt: skip
    cluster.start()
    try:
        cluster.install_view()
        writer, target = cluster.nodes
        http.request(writer.address, "POST", "/debug/hold-outgoing", {"peers": "all"})
        metadata = http.put(writer.address, "held", "v").body["causal-metadata"]
        body = json.dumps({"causal-metadata": metadata}).encode()
        request = (
            f"GET /data/held HTTP/1.1\r\nHost: {target.address}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        assert target.process is not None
        rss_before = _rss_kib(target.process.pid)
        ping_times: list[float] = []
        statuses: list[int] = []

        async def scenario() -> None:
            flood = asyncio.create_task(_flood(target.address, [request] * 1500, hold_s=15))
            await asyncio.sleep(1.0)
            for _ in range(20):
                started = time.perf_counter()
                await asyncio.to_thread(
                    http.request, target.address, "GET", "/ping", None, None, 5.0
                )
                ping_times.append(time.perf_counter() - started)
                await asyncio.sleep(0.1)
            statuses.extend(await flood)

        asyncio.run(scenario())
        rss_after = _rss_kib(target.process.pid)
        overloaded = sum(status == 503 for status in statuses)
        assert overloaded >= 1500 - 64 - 32, (
            f"excess requests must be refused at once: {statuses[:20]}"
        )
        assert sorted(ping_times)[len(ping_times) // 2] < 0.1, ping_times
        assert max(ping_times) < 0.5, ping_times
        assert rss_after - rss_before < 200 * 1024, (rss_before, rss_after)
        assert http.request(target.address, "GET", "/ping").status == 200
    finally:
        http.request(cluster.nodes[0].address, "POST", "/debug/hold-outgoing", {"peers": []})
        cluster.stop()


def test_peer_decoder_refuses_malformed_messages(secured: LocalCluster) -> None:
    node = secured.nodes[0].address
    for raw in (
        b"",
        b"\xc1",
        encoder.encode({"type": "envelope"}),
        encoder.encode(
            {"type": "forward", "operation": "drop-table", "key": "k", "value": None, "token": b""}
        ),
        encoder.encode(
            {"type": "forward", "operation": "get", "key": "", "value": None, "token": b""}
        ),
        encoder.encode(
            {"type": "forward", "operation": "get", "key": "k", "value": None, "token": b"\x02"}
        ),
        encoder.encode(
            {
                "type": "envelope",
                "envelope": {"sender": "", "destination": "", "epoch": 1, "messages": []},
            }
        ),
        msgspec.msgpack.encode([[[[[[[[[]]]]]]]]] * 3),
    ):
        response = http.request(node, "POST", "/kvs/internal/sync", raw=raw, headers=AUTH)
        assert response.status == 400, (raw[:40], response.status)
    assert http.request(node, "GET", "/ping").status == 200
    assert os.environ.get("CAUSALKV_CLUSTER_SECRET") != SECRET
