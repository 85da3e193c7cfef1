"""A cluster of real node processes on 127.0.0.1.

Used by ``causalkv dev`` and by the integration tests: every node is a separate
``causalkv serve`` process with its own port and data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now (bound and released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_json(
    method: str,
    url: str,
    body: object | None = None,
    timeout_s: float = 30.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A blocking JSON request; returns (status, decoded body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw = error.read()
        status = error.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for_ping(
    url: str, timeout_s: float = 20.0, check: Callable[[], None] | None = None
) -> None:
    """Poll ``url``/ping until it answers 200; ``check`` runs before each try
    (it may raise, say when the node's process has exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            status, _ = http_json("GET", f"{url}/ping", timeout_s=1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer /ping in {timeout_s} s")


@dataclass
class LocalNode:
    node_id: str
    port: int
    data_dir: Path
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout_s: float = 5.0) -> int | None:
        self.signal(signal.SIGTERM)
        code = self.wait(timeout_s)
        if code is None:
            self.kill()
        return code

    def wait(self, timeout_s: float) -> int | None:
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        def still_running() -> None:
            if not self.is_running():
                raise RuntimeError(
                    f"node {self.node_id} exited early; see {self.log_path}:\n" + self.log_tail()
                )

        wait_for_ping(self.url, timeout_s, still_running)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalCluster:
    """N node processes in S shards on 127.0.0.1."""

    nodes_count: int = 6
    shards_count: int = 2
    data_dir: Path = field(default_factory=lambda: Path("causalkv-data") / "dev")
    storage: str = "sqlite"
    ports: list[int] | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cluster_name: str = "causalkv-dev"
    nodes: list[LocalNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.nodes_count < 1 or not 1 <= self.shards_count <= self.nodes_count:
            raise ValueError("need at least one node and between 1 and N shards")
        ports = self.ports or free_ports(self.nodes_count)
        environment = dict(os.environ)
        environment.update(self.env)
        for name in ("NODE_ID", "NODE_IDENTIFIER", "ADDRESS", "PORT", "CAUSALKV_LISTEN"):
            environment.pop(name, None)
        for index, port in enumerate(ports[: self.nodes_count], start=1):
            self.nodes.append(self._make_node(index, port, environment))

    def _make_node(self, index: int, port: int, environment: dict[str, str]) -> LocalNode:
        node_id = str(index)
        data_dir = self.data_dir / f"node{index}"
        argv = [
            sys.executable,
            "-m",
            "causalkv",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--node-id",
            node_id,
            "--data-dir",
            str(data_dir),
            "--storage",
            self.storage,
            "--cluster-name",
            self.cluster_name,
            *self.extra_args,
        ]
        return LocalNode(
            node_id, port, data_dir, self.data_dir / f"node{index}.log", argv, environment
        )

    def add_nodes(self, count: int, ports: list[int] | None = None) -> list[LocalNode]:
        environment = self.nodes[0].env if self.nodes else dict(os.environ)
        ports = ports or free_ports(count)
        added = []
        for port in ports[:count]:
            node = self._make_node(len(self.nodes) + 1, port, environment)
            self.nodes.append(node)
            added.append(node)
        return added

    def start(self, nodes: list[LocalNode] | None = None, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        targets = nodes or self.nodes
        for node in targets:
            node.start()
        for node in targets:
            node.wait_ready(timeout_s)

    def view_json(
        self, nodes: list[LocalNode] | None = None, shards: int | None = None
    ) -> dict[str, list[dict[str, object]]]:
        """Shards ``s1``..``sS``, nodes dealt out in contiguous blocks."""
        members = nodes or self.nodes
        count = shards or self.shards_count
        view: dict[str, list[dict[str, object]]] = {f"s{i + 1}": [] for i in range(count)}
        for position, node in enumerate(members):
            shard = f"s{position * count // len(members) + 1}"
            view[shard].append({"address": node.address, "id": int(node.node_id)})
        return view

    @property
    def admin_headers(self) -> dict[str, str]:
        """The Authorization header for admin calls, when a cluster secret is configured."""
        secret = self.env.get("CAUSALKV_CLUSTER_SECRET")
        if "--cluster-secret" in self.extra_args:
            secret = self.extra_args[self.extra_args.index("--cluster-secret") + 1]
        return {} if secret is None else {"Authorization": f"Bearer {secret}"}

    def install_view(
        self, view: dict[str, list[dict[str, object]]] | None = None, via: LocalNode | None = None
    ) -> dict[str, Any]:
        target = via or self.nodes[0]
        status, body = http_json(
            "PUT", f"{target.url}/view", {"view": view or self.view_json()}, 120, self.admin_headers
        )
        if status != 200:
            raise RuntimeError(f"installing the view failed: {status} {body}")
        return dict(body)

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            if node.wait(6) is None:
                with contextlib.suppress(ProcessLookupError):
                    node.kill()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
