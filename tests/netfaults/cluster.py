"""A causalkv cluster on real test hosts, with recorded client histories.

Every node is a separate ``python -m causalkv serve`` process in its own test
host (network namespace, own IP) of a ``causalkv.testing.netns.Network``, so
partitions, link impairment, SIGSTOP and SIGKILL hit real sockets. Clients are
threads in the root namespace (which always reaches every host): each is one
history *process* with its own causal session, talking to one chosen node, and
every operation it makes is recorded with ``causalkv.check.HistoryRecorder``.

After the faults heal, ``wait_for_convergence`` polls every replica's local
``GET /data`` listing until all replicas of each shard hold the same items,
``take_final_reads`` records one final listing per node (``final=True``,
``covers`` = the keys of that shard the clients wrote), and ``check`` runs the
history checker.  ``lost_acknowledged_writes`` is a second, independent check:
every client's last acknowledged put of a key must be what the final state shows,
or have been superseded by a write that was not known to be older.

Usage (see ``test_scenarios.py``)::

    make_cluster = cluster_factory_fixture()

    def test_x(make_cluster):
        cluster = make_cluster(shards=(3, 3))          # 6 hosts, view installed
        client = cluster.client("p1", cluster.nodes[0])
        client.put("k")                                # recorded in the history
        cluster.network.partition([...])               # faults: see causalkv.testing.netns
        with Load([(client, ["k", "j"])]) as load:     # client threads, random mix
            load.wait_for_progress(20)
        cluster.network.heal()
        cluster.finish()  # convergence, final reads, lost-write check, history checker
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import select
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

import pytest

from causalkv.check import CheckResult, HistoryRecorder, Invocation, check_history
from causalkv.core.view import View, parse_sharded_view
from causalkv.testing.netns import CleanupError, Host, HostProcess, Network
from causalkv.testing.netns_pytest import require_netns

NODE_PORT: Final = 8081
DEPENDENCY_TIMEOUT_BODY: Final = {"error": "timed out while waiting for depended updates"}
DEFAULT_CAUSAL_WAIT_S: Final = 20.0
Outcome = Literal["ok", "fail", "info"]


# --------------------------------------------------------------------------- plain HTTP


@dataclass
class Reply:
    """One HTTP exchange: ``status`` is None when no answer came (``error`` says why)."""

    status: int | None
    body: Any = None
    error: str | None = None
    sent: bool = True
    """False when the request certainly never reached the node (connect failed)."""
    elapsed_s: float = 0.0


class Connection:
    """A keep-alive JSON-over-HTTP connection to one node; not thread-safe.

    No retries: a request is sent at most once, so the history records
    exactly what happened. After any error the socket is dropped and the next
    request reconnects. A socket idle for ``IDLE_REUSE_S_MAX`` or that the node
    has closed is not reused: the node closes keep-alive connections idle for
    5 s (uvicorn's default), and a request racing that close would fail with
    an outcome the history must call unknown although nothing happened.
    """

    IDLE_REUSE_S_MAX: Final = 2.0

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def _reusable(self, connection: http.client.HTTPConnection) -> bool:
        sock = connection.sock
        if sock is None or time.monotonic() - self._last_used > self.IDLE_REUSE_S_MAX:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable  # readable while idle: the node closed it (EOF)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, path: str, body: object = None, timeout_s: float | None = None
    ) -> Reply:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        payload = None if body is None else json.dumps(body).encode()
        connection = self._connection
        if connection is not None and not self._reusable(connection):
            self.close()
            connection = None
        if connection is None:
            host, _, port = self.address.rpartition(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                connection.connect()
            except OSError as error:
                connection.close()
                return Reply(None, error=repr(error), sent=False, elapsed_s=_since(started))
            self._connection = connection
        assert connection.sock is not None
        connection.sock.settimeout(timeout)
        try:
            connection.request(
                method, path, body=payload, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            # The request may or may not have been read: only a failed connect
            # proves that it was not sent.
            return Reply(None, error=repr(error), elapsed_s=_since(started))
        self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return Reply(response.status, decoded, elapsed_s=_since(started))


def _since(started: float) -> float:
    return time.monotonic() - started


def http_json(
    address: str, method: str, path: str, body: object = None, timeout_s: float = 5.0
) -> Reply:
    """One request on a fresh connection (for probes and admin calls)."""
    connection = Connection(address, timeout_s)
    try:
        return connection.request(method, path, body)
    finally:
        connection.close()


def key_path(key: str) -> str:
    return "/data/" + quote(key, safe="")


# --------------------------------------------------------------------------- nodes


@dataclass
class Node:
    """One causalkv node: one process in one test host."""

    index: int
    node_id: int
    host: Host
    shard: str
    data_dir: Path | None
    argv: list[str]
    log_path: Path
    process: HostProcess | None = None

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{NODE_PORT}"

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address} {self.shard}>"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- operation log


@dataclass
class OperationRecord:
    """What one client operation did, kept beside the history for direct checks."""

    process: str
    f: str
    key: str | None
    value: str | None
    node: str
    outcome: Outcome
    status: int | None
    result: Any = None
    error: str | None = None
    elapsed_s: float = 0.0
    seen_before: frozenset[str] = frozenset()
    """Values of ``key`` this process had read or written (acknowledged) before it."""


@dataclass
class OperationTally:
    """Counts of outcomes, by operation and by answer."""

    outcomes: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    """Operations that did not succeed, except deletes that found nothing (404)."""

    def add(self, record: OperationRecord) -> None:
        self.outcomes[f"{record.f} {record.outcome}"] += 1
        if record.outcome != "ok" and not (record.f == "delete" and record.status == 404):
            self.errors += 1
        if record.status is not None:
            answer = str(record.status)
            if isinstance(record.result, dict) and "error" in record.result:
                answer += f" {record.result['error']}"
        else:
            answer = f"no answer: {(record.error or '').split('(')[0]}"
        self.answers[f"{record.f} {answer}"] += 1

    def count(self, f: str, outcome: Outcome) -> int:
        return self.outcomes[f"{f} {outcome}"]

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def render(self) -> str:
        outcome_text = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))
        answer_text = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        return f"{self.errors} errors; outcomes {{{outcome_text}}}; answers {{{answer_text}}}"


# --------------------------------------------------------------------------- clients


class Client:
    """One history process with its own causal session, talking to one node.

    Methods send one request, record it in the cluster's history and return the
    ``OperationRecord``. Write outcomes: 200 ok; 4xx fail; 5xx, a timeout or a
    broken connection after sending is info (the write may have happened); a
    connect failure is fail. Read outcomes: 200 (and 404 for get) ok, anything
    else fail. The session adopts the metadata of every ok answer.
    """

    def __init__(
        self, cluster: Cluster, process: str, node: Node, timeout_s: float | None = None
    ) -> None:
        self.cluster = cluster
        self.process = process
        self.node = node
        self.timeout_s = timeout_s if timeout_s is not None else cluster.causal_wait_s + 10.0
        self.metadata: dict[str, Any] = {}
        self._connection = Connection(node.address, self.timeout_s)
        self._counter = 0
        self._seen: dict[str, set[str]] = {}

    def use(self, node: Node) -> None:
        """Talk to ``node`` from now on (same session)."""
        self._connection.close()
        self.node = node
        self._connection = Connection(node.address, self.timeout_s)

    def close(self) -> None:
        self._connection.close()

    def next_value(self, key: str) -> str:
        self._counter += 1
        return f"{self.process}.{self._counter}"

    def put(self, key: str, value: str | None = None) -> OperationRecord:
        value = self.next_value(key) if value is None else value
        body = {"value": value, "causal-metadata": self.metadata}
        return self._run("put", key, value, "PUT", key_path(key), body)

    def get(self, key: str) -> OperationRecord:
        return self._run("get", key, None, "GET", key_path(key), {"causal-metadata": self.metadata})

    def delete(self, key: str) -> OperationRecord:
        body = {"causal-metadata": self.metadata}
        return self._run("delete", key, None, "DELETE", key_path(key), body)

    def list(self) -> OperationRecord:
        return self._run("list", None, None, "GET", "/data", {"causal-metadata": self.metadata})

    def _run(
        self, f: str, key: str | None, value: str | None, method: str, path: str, body: object
    ) -> OperationRecord:
        recorder = self.cluster.recorder
        node = self.node.name
        seen_before = frozenset(self._seen.get(key, ())) if key is not None else frozenset()
        invocation = recorder.invoke(self.process, f, key, value, node)  # type: ignore[arg-type]
        reply = self._connection.request(method, path, body)
        outcome, result = self._judge(f, reply)
        self._complete(invocation, outcome, result)
        if outcome == "ok" and isinstance(reply.body, dict):
            metadata = reply.body.get("causal-metadata")
            if isinstance(metadata, dict):
                self.metadata = metadata
            if key is not None and isinstance(result, str):
                self._seen.setdefault(key, set()).add(result)
            if f == "put" and key is not None and value is not None:
                self._seen.setdefault(key, set()).add(value)
            if f == "list" and isinstance(result, dict):
                for item_key, item_value in result.items():
                    self._seen.setdefault(item_key, set()).add(item_value)
        record = OperationRecord(
            self.process,
            f,
            key,
            value,
            node,
            outcome,
            reply.status,
            reply.body if outcome != "ok" else result,
            reply.error,
            reply.elapsed_s,
            seen_before,
        )
        self.cluster.log_operation(record)
        return record

    @staticmethod
    def _judge(f: str, reply: Reply) -> tuple[Outcome, Any]:
        status, body = reply.status, reply.body
        writes = f in ("put", "delete")
        if status is None:
            if writes:
                return ("info" if reply.sent else "fail"), None
            return "fail", None
        if f == "get" and status == 404:
            return "ok", None
        if status == 200:
            if f == "get":
                return "ok", body.get("value") if isinstance(body, dict) else None
            if f == "list":
                items = body.get("items") if isinstance(body, dict) else None
                return "ok", dict(items) if isinstance(items, dict) else {}
            return "ok", None
        if writes and status >= 500:
            return "info", None
        return "fail", None

    def _complete(self, invocation: Invocation, outcome: Outcome, result: Any) -> None:
        recorder = self.cluster.recorder
        if outcome == "ok":
            recorder.ok(invocation, result)
        elif outcome == "fail":
            recorder.fail(invocation)
        else:
            recorder.info(invocation)


# --------------------------------------------------------------------------- load


@dataclass
class Workload:
    """Operation mix of one load client (weights, need not sum to 1)."""

    put: float = 0.5
    get: float = 0.4
    list: float = 0.05
    delete: float = 0.0
    pause_s: float = 0.0
    """Think time between operations."""


class Load:
    """Client threads running a random workload until stopped; a context manager.

    ``assignments`` maps each client to the keys it uses. Every thread stops by
    itself after ``max_operations`` operations or ``max_duration_s`` seconds.
    """

    def __init__(
        self,
        assignments: Sequence[tuple[Client, Sequence[str]]],
        workload: Workload | None = None,
        *,
        seed: int = 1,
        max_operations: int = 20_000,
        max_duration_s: float = 120.0,
    ) -> None:
        self.assignments = list(assignments)
        self.workload = workload or Workload()
        self.seed = seed
        self.max_operations = max_operations
        self.max_duration_s = max_duration_s
        self.tally = OperationTally()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._completed: Counter[str] = Counter()
        self._ok: Counter[str] = Counter()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.stop()
        else:  # do not hide the original failure behind a stop() complaint
            with contextlib.suppress(Exception):
                self.stop()

    def start(self) -> None:
        for number, (client, keys) in enumerate(self.assignments):
            rng = random.Random(self.seed * 1000 + number)
            thread = threading.Thread(
                target=self._run, args=(client, list(keys), rng), name=f"load-{client.process}"
            )
            thread.daemon = True
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop every client (after its operation in flight) and wait for them."""
        self._stop.set()
        deadline = time.monotonic() + (
            timeout_s or 5 + max(c.timeout_s for c, _ in self.assignments)
        )
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise AssertionError(f"load threads did not stop: {alive}")
        if self._errors:
            raise self._errors[0]

    def ok_counts(self) -> dict[str, int]:
        with self._lock:
            return {client.process: self._ok[client.process] for client, _ in self.assignments}

    def completed_counts(self) -> dict[str, int]:
        with self._lock:
            return {c.process: self._completed[c.process] for c, _ in self.assignments}

    def wait_for_progress(
        self,
        operations: int,
        *,
        processes: Sequence[str] | None = None,
        ok_only: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        """Wait until each client (or each of ``processes``) completed ``operations``
        more operations (ok ones, unless ``ok_only`` is false) than when called."""
        counts = self.ok_counts if ok_only else self.completed_counts
        start = counts()
        names = list(processes) if processes is not None else list(start)
        deadline = time.monotonic() + timeout_s
        while True:
            now = counts()
            lagging = {n: now[n] - start[n] for n in names if now[n] - start[n] < operations}
            if not lagging:
                return
            if self._errors:
                raise self._errors[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"clients made too little progress in {timeout_s} s "
                    f"(wanted {operations} each): {lagging}; {self.tally.render()}"
                )
            time.sleep(0.02)

    def _run(self, client: Client, keys: list[str], rng: random.Random) -> None:
        workload = self.workload
        choices = ["put", "get", "list", "delete"]
        weights = [workload.put, workload.get, workload.list, workload.delete]
        deadline = time.monotonic() + self.max_duration_s
        try:
            for _ in range(self.max_operations):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                f = rng.choices(choices, weights)[0]
                key = rng.choice(keys)
                if f == "put":
                    record = client.put(key)
                elif f == "get":
                    record = client.get(key)
                elif f == "delete":
                    record = client.delete(key)
                else:
                    record = client.list()
                with self._lock:
                    self.tally.add(record)
                    self._completed[client.process] += 1
                    if record.outcome == "ok":
                        self._ok[client.process] += 1
                if record.outcome != "ok":
                    self._stop.wait(0.05)  # e.g. a dead node refusing connections
                elif workload.pause_s:
                    self._stop.wait(workload.pause_s)
        except BaseException as error:  # surfaced by stop() / wait_for_progress()
            self._errors.append(error)


# --------------------------------------------------------------------------- the cluster


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05
) -> float:
    """Poll ``condition`` until true; returns the seconds waited, raises AssertionError."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


class Cluster:
    """causalkv nodes on the hosts of ``network``, in shards of the given sizes.

    Node ``i`` runs on host ``i`` with id ``i + 1``; shards are named ``s1``,
    ``s2``, ... in order. ``storage`` is ``"memory"`` or ``"sqlite"`` (then each
    node has its own data directory under ``workdir``).
    """

    def __init__(
        self,
        network: Network,
        workdir: Path,
        shards: Sequence[int] = (3, 3),
        *,
        storage: str = "memory",
        causal_wait_s: float | None = None,
        extra_args: Sequence[str] = (),
        record_to_file: bool = True,
    ) -> None:
        if sum(shards) > len(network.hosts):
            raise ValueError(f"{sum(shards)} nodes need as many hosts, have {len(network.hosts)}")
        self.network = network
        self.workdir = workdir
        self.storage = storage
        self.causal_wait_s = DEFAULT_CAUSAL_WAIT_S if causal_wait_s is None else causal_wait_s
        workdir.mkdir(parents=True, exist_ok=True)
        self.history_path = workdir / "history.jsonl"
        self.recorder = HistoryRecorder(self.history_path if record_to_file else None)
        self.operations: list[OperationRecord] = []
        self._operations_lock = threading.Lock()
        self.nodes: list[Node] = []
        index = 0
        for shard_number, size in enumerate(shards, start=1):
            for _ in range(size):
                self.nodes.append(
                    self._make_node(index, f"s{shard_number}", causal_wait_s, extra_args)
                )
                index += 1
        self.view_json: dict[str, list[dict[str, object]]] = {}
        for node in self.nodes:
            self.view_json.setdefault(node.shard, []).append(
                {"address": node.address, "id": node.node_id}
            )
        self.view: View = parse_sharded_view(self.view_json)
        self.clients: list[Client] = []

    def _make_node(
        self, index: int, shard: str, causal_wait_s: float | None, extra_args: Sequence[str]
    ) -> Node:
        host = self.network.hosts[index]
        data_dir = None if self.storage == "memory" else self.workdir / f"data-{host.name}"
        argv = [
            sys.executable,
            "-m",
            "causalkv",
            "serve",
            "--listen",
            f"{host.ip}:{NODE_PORT}",
            "--node-id",
            str(index + 1),
            "--storage",
            self.storage,
            "--log-level",
            "warning",
        ]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        if causal_wait_s is not None:
            argv += ["--causal-wait-s", str(causal_wait_s)]
        argv += list(extra_args)
        return Node(
            index, index + 1, host, shard, data_dir, argv, self.workdir / f"{host.name}.log"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node, install the view through the first, wait until all serve it."""
        for node in self.nodes:
            node.process = node.host.spawn(node.argv, log_path=node.log_path)
        for node in self.nodes:
            self.wait_for_node(node, timeout_s)
        reply = http_json(
            self.nodes[0].address, "PUT", "/view", {"view": self.view_json}, timeout_s=timeout_s
        )
        assert reply.status == 200, f"PUT /view answered {reply.status} {reply.body} {reply.error}"
        expected = self.view.to_sharded_json()

        def everyone_serves_the_view() -> bool:
            for node in self.nodes:
                status = http_json(node.address, "GET", "/status", timeout_s=2.0)
                if status.status != 200 or status.body.get("view") != expected:
                    return False
                if status.body.get("change") is not None:
                    return False
            return True

        wait_until(everyone_serves_the_view, timeout_s, "every node to serve the view", 0.1)

    def wait_for_node(self, node: Node, timeout_s: float = 60.0) -> None:
        """Wait until ``node``'s process answers ``/ping``."""
        assert node.process is not None
        node.process.wait_for_port(NODE_PORT, timeout_s=timeout_s)

        def pings() -> bool:
            if node.process is None or not node.process.is_running():
                raise AssertionError(f"{node} exited:\n{node.log_tail()}")
            return http_json(node.address, "GET", "/ping", timeout_s=2.0).status == 200

        wait_until(pings, timeout_s, f"{node} to answer /ping")

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and every client; idempotent."""
        for client in self.clients:
            client.close()
        running = [
            n.process for n in self.nodes if n.process is not None and n.process.is_running()
        ]
        # In parallel: each takes about half a second to shut down cleanly.
        stoppers = [
            threading.Thread(target=_terminate_quietly, args=(process,)) for process in running
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        with contextlib.suppress(Exception):
            self.recorder.close()

    # -- faults on nodes ---------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        assert node.process is not None
        node.process.kill()

    def restart(self, node: Node, timeout_s: float = 60.0) -> None:
        """Start the node's process again (same argv, same data directory)."""
        assert node.process is not None
        node.process.restart()
        self.wait_for_node(node, timeout_s)

    def pause(self, node: Node) -> None:
        assert node.process is not None
        node.process.pause()

    def resume(self, node: Node) -> None:
        assert node.process is not None
        node.process.resume()

    # -- placement ---------------------------------------------------------------------------

    @property
    def shard_names(self) -> list[str]:
        return [shard.name for shard in self.view.shards]

    def shard_of(self, key: str) -> str:
        return self.view.shards[self.view.shard_index_for_key(key)].name

    def replicas(self, shard: str) -> list[Node]:
        return [node for node in self.nodes if node.shard == shard]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def keys_for(self, shard: str, count: int, prefix: str) -> list[str]:
        """``count`` keys named ``prefix-N`` that live on ``shard``."""
        keys: list[str] = []
        number = 0
        while len(keys) < count:
            key = f"{prefix}-{number}"
            number += 1
            if self.shard_of(key) == shard:
                keys.append(key)
            if number > count * 1000 + 10_000:
                raise AssertionError(f"no keys for shard {shard}")
        return keys

    # -- clients and operations --------------------------------------------------------------

    def client(self, process: str, node: Node, timeout_s: float | None = None) -> Client:
        client = Client(self, process, node, timeout_s)
        self.clients.append(client)
        return client

    def log_operation(self, record: OperationRecord) -> None:
        with self._operations_lock:
            self.operations.append(record)

    def written_keys(self) -> dict[str, set[str]]:
        """Keys of every put or delete invoked, by shard."""
        by_shard: dict[str, set[str]] = {name: set() for name in self.shard_names}
        with self._operations_lock:
            for record in self.operations:
                if record.f in ("put", "delete") and record.key is not None:
                    by_shard[self.shard_of(record.key)].add(record.key)
        return by_shard

    # -- convergence and final reads ---------------------------------------------------------

    def listing(self, node: Node, timeout_s: float = 5.0) -> dict[str, str] | None:
        """The items ``node`` itself holds for its shard (no recording), or None."""
        reply = http_json(node.address, "GET", "/data", {"causal-metadata": {}}, timeout_s)
        if reply.status != 200 or not isinstance(reply.body, dict):
            return None
        items = reply.body.get("items")
        return dict(items) if isinstance(items, dict) else None

    def divergence(self) -> dict[str, dict[str, dict[str, str] | None]]:
        """Per shard whose replicas differ: each replica's listing (None if no answer)."""
        differing: dict[str, dict[str, dict[str, str] | None]] = {}
        for shard in self.shard_names:
            listings = {node.name: self.listing(node) for node in self.replicas(shard)}
            values = list(listings.values())
            if any(v is None for v in values) or any(v != values[0] for v in values[1:]):
                differing[shard] = listings
        return differing

    def wait_for_convergence(self, timeout_s: float = 30.0, interval_s: float = 0.05) -> float:
        """Wait until all replicas of every shard list the same items; returns seconds."""
        started = time.monotonic()
        last: dict[str, dict[str, dict[str, str] | None]] = {}
        while True:
            last = self.divergence()
            if not last:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise AssertionError(
                    f"replicas did not converge in {timeout_s} s: {describe_divergence(last)}"
                )
            time.sleep(interval_s)

    def take_final_reads(self) -> dict[str, dict[str, str]]:
        """Record one final ``GET /data`` per node; returns the items by node name."""
        covers = self.written_keys()
        finals: dict[str, dict[str, str]] = {}
        for node in self.nodes:
            process = f"final-{node.name}"
            invocation = self.recorder.invoke(process, "list", None, None, node.name)
            items = self.listing(node, timeout_s=10.0)
            assert items is not None, f"final read of {node} failed:\n{node.log_tail()}"
            self.recorder.ok(
                invocation, items, final=True, covers=sorted(covers[node.shard]), shard=node.shard
            )
            finals[node.name] = items
        return finals

    def final_state(self, finals: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Every key's final value (replicas of a shard agree after convergence)."""
        state: dict[str, str] = {}
        for shard in self.shard_names:
            first = finals[self.replicas(shard)[0].name]
            state.update(first)
        return state

    # -- checks ------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        return check_history(self.recorder.history())

    def assert_history_valid(self) -> CheckResult:
        result = self.check()
        assert result.ok, (
            f"history {self.history_path} violates causal+ consistency:\n{result.render()}"
        )
        return result

    def lost_acknowledged_writes(self, final_state: Mapping[str, str]) -> list[str]:
        """Every process's last acknowledged put of each key must be the final value,
        or be superseded by another put the process had not seen before its own
        (a concurrent or later write). Keys with deletes are skipped (the checker
        judges those). Returns a description of each violation."""
        with self._operations_lock:
            records = list(self.operations)
        deleted = {r.key for r in records if r.f == "delete" and r.outcome != "fail"}
        puts_by_value = {
            (r.key, r.value): r for r in records if r.f == "put" and r.outcome != "fail"
        }
        last_ok: dict[tuple[str, str], OperationRecord] = {}
        for record in records:
            if record.f == "put" and record.outcome == "ok" and record.key is not None:
                last_ok[(record.process, record.key)] = record
        problems: list[str] = []
        for (process, key), write in sorted(last_ok.items()):
            if key in deleted:
                continue
            final = final_state.get(key)
            if final == write.value:
                continue
            if final is None:
                problems.append(f"{key}: acknowledged {write.value!r} by {process}, final: absent")
                continue
            superseding = puts_by_value.get((key, final))
            if superseding is None:
                problems.append(f"{key}: final value {final!r} was never written (or failed)")
            elif final in write.seen_before:
                problems.append(
                    f"{key}: acknowledged {write.value!r} by {process} lost to {final!r}, "
                    f"which {process} had already seen before writing"
                )
        return problems

    def finish(self, convergence_timeout_s: float = 30.0) -> dict[str, str]:
        """Wait for convergence, take final reads, run both checks; returns the final state."""
        self.wait_for_convergence(convergence_timeout_s)
        finals = self.take_final_reads()
        state = self.final_state(finals)
        lost = self.lost_acknowledged_writes(state)
        assert not lost, "acknowledged writes lost:\n" + "\n".join(lost[:20])
        self.assert_history_valid()
        return state


def _terminate_quietly(process: HostProcess) -> None:
    """SIGTERM (SIGKILL after 5 s); the network's teardown kills any straggler anyway."""
    with contextlib.suppress(Exception):
        process.terminate(timeout_s=5.0)


def describe_divergence(differing: Mapping[str, Mapping[str, Mapping[str, str] | None]]) -> str:
    parts: list[str] = []
    for shard, listings in differing.items():
        answered = {n: items for n, items in listings.items() if items is not None}
        silent = [n for n, items in listings.items() if items is None]
        all_keys = set().union(*(set(i) for i in answered.values())) if answered else set()
        differing_keys = sorted(
            k for k in all_keys if len({items.get(k) for items in answered.values()}) > 1
        )
        sample = {k: {n: items.get(k) for n, items in answered.items()} for k in differing_keys[:5]}
        parts.append(
            f"{shard}: {len(differing_keys)} keys differ (e.g. {sample}); no answer from {silent}"
        )
    return "; ".join(parts)


# --------------------------------------------------------------------------- pytest


def cluster_factory_fixture(name: str | None = None) -> Any:
    """Make a function-scoped fixture yielding ``make(shards=(3, 3), **kwargs) -> Cluster``.

    Each call creates a ``Network`` with one host per node, starts the nodes and
    installs the view. Teardown stops the node processes, then the network
    (which kills anything left in its namespaces). Node logs and the history
    file stay in the test's ``tmp_path``.
    """

    @pytest.fixture(name=name)
    def _factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
        require_netns()
        made: list[tuple[Network, Cluster | None]] = []

        def make(shards: Sequence[int] = (3, 3), **kwargs: Any) -> Cluster:
            network = Network(sum(shards))
            made.append((network, None))
            network.start()
            cluster = Cluster(network, tmp_path / f"cluster{len(made)}", shards, **kwargs)
            made[-1] = (network, cluster)
            cluster.start()
            return cluster

        try:
            yield make
        finally:
            errors: list[str] = []
            for network, cluster in reversed(made):
                if cluster is not None:
                    cluster.stop()
                try:
                    network.close()
                except CleanupError as error:
                    errors.append(str(error))
            if errors:
                raise CleanupError("; ".join(errors))

    return _factory


def tcp_reachable(address: str, timeout_s: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False
