"""The systems the comparison drives, each started fresh on 127.0.0.1.

Every system knows the shell commands that start it by hand, so the
comparison can print exact reproduction steps, and the process ids of its
servers, so they can be pinned to the server CPUs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from causalkv.bench.drivers import StoreProtocol
from causalkv.local_cluster import LocalCluster, free_ports, http_json, port_is_free

VENV_PYTHON = sys.executable


@dataclass
class System:
    """A store under test: start, address it, stop."""

    name: str
    description: str
    protocol: StoreProtocol
    data_dir: Path
    targets: tuple[str, ...] = ()
    commands: list[str] = field(default_factory=list)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def status(self) -> dict[str, object] | None:
        """The ``/status`` of the first node, for causalkv; None elsewhere."""
        return None


class _Processes(System):
    """Systems made of plain processes we launch ourselves."""

    def __init__(
        self, name: str, description: str, protocol: StoreProtocol, data_dir: Path
    ) -> None:
        super().__init__(name, description, protocol, data_dir)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def launch(self, argv: list[str], log_name: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / log_name, "ab")  # noqa: SIM115 (closed in stop)
        self.logs.append(log)
        self.commands.append(shlex.join(argv))
        self.processes.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
        self.processes.clear()
        self.logs.clear()
        self.commands.clear()

    def check_running(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name}: a server exited early; logs in {self.data_dir}")


class NoopSystem(_Processes):
    """The ceiling: uvicorn + httptools + uvloop answering a fixed body."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            "noop",
            "no-op ASGI server on the node's stack (the ceiling)",
            StoreProtocol.CAUSALKV,
            data_dir,
        )

    def start(self) -> None:
        (port,) = free_ports(1)
        self.targets = (f"127.0.0.1:{port}",)
        self.launch(
            [VENV_PYTHON, "-m", "causalkv.bench.noop_server", "--listen", self.targets[0]],
            "noop.log",
        )
        _wait_for(lambda: http_json("GET", f"http://{self.targets[0]}/ping", timeout_s=1)[0] == 200)


class CausalKvSystem(System):
    """A causalkv cluster of real node processes (durable sqlite storage by default)."""

    def __init__(
        self, name: str, nodes: int, shards: int, data_dir: Path, storage: str = "sqlite"
    ) -> None:
        replicas = nodes // shards
        super().__init__(
            name,
            f"causalkv, {shards} shard(s) x {replicas} replica(s), {storage} storage",
            StoreProtocol.CAUSALKV,
            data_dir,
        )
        self.nodes_count = nodes
        self.shards = shards
        self.storage = storage
        self.cluster: LocalCluster | None = None

    def start(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        ports = consecutive_free_ports(self.nodes_count)
        cluster = LocalCluster(
            self.nodes_count, self.shards, data_dir=self.data_dir, storage=self.storage, ports=ports
        )
        self.cluster = cluster
        cluster.start()
        cluster.install_view()
        self.targets = tuple(node.address for node in cluster.nodes)
        self.commands = [
            shlex.join(
                [
                    ".venv/bin/causalkv",
                    "dev",
                    "--nodes",
                    str(self.nodes_count),
                    "--shards",
                    str(self.shards),
                    "--base-port",
                    str(ports[0]),
                    "--data-dir",
                    str(self.data_dir),
                    "--storage",
                    self.storage,
                    "--fresh",
                ]
            )
        ]

    def pids(self) -> list[int]:
        if self.cluster is None:
            return []
        return [node.process.pid for node in self.cluster.nodes if node.process is not None]

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    def status(self) -> dict[str, object] | None:
        if self.cluster is None:
            return None
        code, body = http_json("GET", f"{self.cluster.nodes[0].url}/status", timeout_s=5)
        return body if code == 200 and isinstance(body, dict) else None


class EtcdSystem(_Processes):
    """Three etcd members on loopback (Debian's etcd-server), default durability."""

    def __init__(self, data_dir: Path, members: int = 3) -> None:
        super().__init__(
            f"etcd-{members}",
            f"etcd {_etcd_version()}, {members} members (Raft, fsync per commit)",
            StoreProtocol.ETCD,
            data_dir,
        )
        self.members = members

    def start(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        ports = free_ports(2 * self.members)
        client_ports, peer_ports = ports[: self.members], ports[self.members :]
        cluster = ",".join(f"m{i + 1}=http://127.0.0.1:{port}" for i, port in enumerate(peer_ports))
        for index in range(self.members):
            client = f"http://127.0.0.1:{client_ports[index]}"
            peer = f"http://127.0.0.1:{peer_ports[index]}"
            self.launch(
                [
                    "etcd",
                    "--name",
                    f"m{index + 1}",
                    "--data-dir",
                    str(self.data_dir / f"m{index + 1}"),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    cluster,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "causalkv-bench",
                    "--logger",
                    "zap",
                    "--log-level",
                    "warn",
                ],
                f"m{index + 1}.log",
            )
        self.targets = tuple(f"127.0.0.1:{port}" for port in client_ports)

        def healthy() -> bool:
            self.check_running()
            for target in self.targets:
                with urllib.request.urlopen(f"http://{target}/health", timeout=1) as answer:
                    if b'"true"' not in answer.read():
                        return False
            return True

        _wait_for(healthy, timeout_s=60)


class RedisSystem(_Processes):
    """One Redis server, in memory only (no RDB snapshots, no AOF)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            "redis",
            f"Redis {_redis_version()}, one server, in memory (no persistence)",
            StoreProtocol.REDIS,
            data_dir,
        )

    def start(self) -> None:
        (port,) = free_ports(1)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.targets = (f"127.0.0.1:{port}",)
        self.launch(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            "redis.log",
        )

        def answers() -> bool:
            self.check_running()
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        _wait_for(answers)


def consecutive_free_ports(count: int, first: int = 20000, last: int = 40000) -> list[int]:
    """``count`` consecutive free ports (so ``causalkv dev --base-port`` can reproduce them)."""
    for base in range(first, last, count):
        ports = list(range(base, base + count))
        if all(port_is_free(port) for port in ports):
            return ports
    raise RuntimeError("no run of free ports found")


def _wait_for(predicate: object, timeout_s: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except RuntimeError:
            raise
        except (OSError, ValueError) as error:
            last_error = error
        time.sleep(0.1)
    raise TimeoutError(f"server not ready after {timeout_s} s: {last_error!r}")


def _etcd_version() -> str:
    return _first_line(["etcd", "--version"]).removeprefix("etcd Version: ")


def _redis_version() -> str:
    line = _first_line(["redis-server", "--version"])
    for part in line.split():
        if part.startswith("v="):
            return part[2:]
    return line


def _first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.split("\n")[
            0
        ]
    return "(not installed)"


def pin(pids: list[int], cpus: set[int]) -> None:
    """Pin every thread of every process to ``cpus`` (no-op where unsupported)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    for pid in pids:
        task_dir = Path(f"/proc/{pid}/task")
        threads = [int(t.name) for t in task_dir.iterdir()] if task_dir.exists() else [pid]
        for thread in threads:
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.sched_setaffinity(thread, cpus)
