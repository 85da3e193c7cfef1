"""Session guarantees of the client on a real cluster, judged by the history checker.

Four client sessions, each in its own thread with its own `Client`, put, get, delete
and list a small set of shared keys concurrently (so reads race with writes on other
replicas). Every operation is recorded in the checker's format; at the end a session
merged from all four reads every key and lists every shard as final reads. The checker
must find no violation: read-your-writes, monotonic reads and writes, writes-follow-reads,
causal visibility, convergence and no lost acknowledged writes.
"""

from __future__ import annotations

import random
import threading

from causalkv import CausalKVError, Client, Session
from causalkv.check import HistoryRecorder, check_history
from causalkv.local_cluster import LocalCluster

OPERATIONS_PER_SESSION = 60


def run_session(
    name: str,
    addresses: list[str],
    keys: list[str],
    recorder: HistoryRecorder,
    sessions: dict[str, Session],
    errors: list[str],
) -> None:
    rng = random.Random(name)
    # Each session prefers its own replicas (seeded), so sessions see each other's writes
    # through replication, not only through a shared replica.
    with Client(addresses, rng=random.Random(name)) as kv:
        view = kv.view()
        for step in range(OPERATIONS_PER_SESSION):
            roll = rng.random()
            key = rng.choice(keys)
            try:
                if roll < 0.45:
                    value = f"{name}-{step}"
                    invocation = recorder.invoke(name, "put", key, value, "client")
                    try:
                        kv.put(key, value)
                    except CausalKVError as error:
                        (recorder.info if error.maybe_applied else recorder.fail)(invocation)
                        raise
                    recorder.ok(invocation)
                elif roll < 0.85:
                    invocation = recorder.invoke(name, "get", key, None, "client")
                    try:
                        reading = kv.fetch(key)
                    except CausalKVError:
                        recorder.fail(invocation)
                        raise
                    recorder.ok(invocation, reading.value, node=reading.node)
                elif roll < 0.93:
                    invocation = recorder.invoke(name, "delete", key, None, "client")
                    try:
                        kv.delete(key)
                    except CausalKVError as error:
                        (recorder.info if error.maybe_applied else recorder.fail)(invocation)
                        raise
                    recorder.ok(invocation)
                else:
                    shard_index = rng.randrange(len(view.shards))
                    shard = view.shards[shard_index].name
                    covered = [k for k in keys if view.shard_index_for_key(k) == shard_index]
                    invocation = recorder.invoke(name, "list", None, None, "client")
                    try:
                        items = kv.items(shard)
                    except CausalKVError:
                        recorder.fail(invocation)
                        raise
                    mine = {k: v for k, v in items.items() if k in keys}
                    recorder.ok(invocation, mine, covers=covered, shard=shard)
            except CausalKVError as error:
                errors.append(f"{name} step {step}: {error!r}")
        sessions[name] = kv.session


def test_concurrent_sessions_pass_the_checker(cluster: LocalCluster) -> None:
    addresses = [node.address for node in cluster.nodes]
    keys = [f"causal-{i}" for i in range(10)]
    recorder = HistoryRecorder()
    sessions: dict[str, Session] = {}
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=run_session, args=(f"p{i}", addresses, keys, recorder, sessions, errors)
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sorted(sessions) == ["p0", "p1", "p2", "p3"]

    merged = Session()
    for session in sessions.values():
        merged |= session
    # The merged session depends on every acknowledged write: any replica serving it
    # must show all of them, so these reads are final (converged) reads.
    with Client(addresses, session=merged) as kv:
        view = kv.view()
        for key in keys:
            invocation = recorder.invoke("final", "get", key, None, "client")
            recorder.ok(invocation, kv.fetch(key).value, final=True)
        for shard_index, shard in enumerate(view.shards):
            covered = [k for k in keys if view.shard_index_for_key(k) == shard_index]
            invocation = recorder.invoke("final", "list", None, None, "client")
            items = {k: v for k, v in kv.items(shard.name).items() if k in keys}
            recorder.ok(invocation, items, final=True, covers=covered, shard=shard.name)

    result = check_history(recorder.history())
    assert result.ok, result.render()
    assert result.statistics.operations == 4 * OPERATIONS_PER_SESSION + len(keys) + 2
