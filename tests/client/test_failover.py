"""Failover on a real cluster: when replicas die the client moves to the next replica of
the shard without losing its session guarantees; when a whole shard is gone it gives up
within its retry budget with `Unavailable`, naming what it tried, while the other shard
keeps working. The recorded history of a run with a replica killed half way passes the
causal checker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from causalkv import AsyncClient, Client, Unavailable
from causalkv.check import HistoryRecorder, check_history
from causalkv.local_cluster import LocalCluster, LocalNode
from tests.client.conftest import ClusterFactory, wait_until_replicated
from tests.client.test_cli import CliInvoker


def node_at(cluster: LocalCluster, address: str) -> LocalNode:
    return next(node for node in cluster.nodes if node.address == address)


def test_reads_and_writes_fail_over_when_replicas_die(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    with Client([node.address for node in cluster.nodes]) as kv:
        kv["greeting"] = "hello"
        first, second, third = kv.replicas_for("greeting")
        wait_until_replicated([second, third], kv.session.metadata)
        node_at(cluster, first).kill()
        started = time.monotonic()
        reading = kv.fetch("greeting")
        assert reading.value == "hello"  # read-your-writes survives the failover
        assert reading.node != first
        kv["greeting"] = "hello again"
        assert kv["greeting"] == "hello again"
        assert time.monotonic() - started < 5
        assert kv.replicas_for("greeting")[-1] == first  # the dead node is tried last

        wait_until_replicated([third], kv.session.metadata)
        node_at(cluster, kv.replicas_for("greeting")[0]).kill()
        assert kv["greeting"] == "hello again"
        kv["greeting"] = "last replica standing"
        assert kv.fetch("greeting").node == third or kv.fetch("greeting").node == second


def test_a_dead_seed_does_not_matter_once_the_view_is_known(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster()
    seed = cluster.nodes[0]
    with Client(seed.address) as kv:
        kv.view()
        seed.kill()
        for i in range(20):
            kv[f"key-{i}"] = str(i)
        assert [kv[f"key-{i}"] for i in range(20)] == [str(i) for i in range(20)]
        # Re-reading the view asks the other nodes of the view, not only the dead seed.
        assert len(list(kv.view(refresh=True).all_addresses())) == 6

    # The operator's commands show the dead node as down.
    cli = CliInvoker([node.address for node in cluster.nodes[1:]], tmp_path / "session")
    status = cli.json("status")
    up = {node["address"]: node["up"] for node in status["nodes"]}
    assert up == {node.address: node is not seed for node in cluster.nodes}
    shown = cli.json("view", "show")
    health = {node["address"]: node["health"] for s in shown["shards"] for node in s["nodes"]}
    assert health[seed.address] == "down"
    assert sorted(set(health.values())) == ["down", "ok"]


def test_a_lost_shard_is_unavailable_and_the_other_shard_still_works(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster()
    with Client([node.address for node in cluster.nodes], retries=4) as kv:
        view = kv.view()
        lost = next(k for k in (f"k{i}" for i in range(100)) if view.shard_index_for_key(k) == 0)
        kept = next(k for k in (f"k{i}" for i in range(100)) if view.shard_index_for_key(k) == 1)
        kv[lost] = "a"
        kv[kept] = "b"
        for address in view.replicas(0):
            node_at(cluster, address).kill()
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            kv.put(lost, "c")
        assert time.monotonic() - started < 10
        assert raised.value.attempts  # says what it tried
        assert {attempt.address for attempt in raised.value.attempts} <= set(view.replicas(0))
        assert not raised.value.maybe_applied  # refused connections never reach a node
        with pytest.raises(Unavailable):
            kv.get(lost)
        assert kv[kept] == "b"
        kv[kept] = "still writable"
        assert kv[kept] == "still writable"


def test_async_client_fails_over(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with AsyncClient([node.address for node in cluster.nodes]) as kv:
            await kv.put("k", "v1")
            victim, *others = await kv.replicas_for("k")
            wait_until_replicated(others, kv.session.metadata)
            node_at(cluster, victim).kill()
            assert await kv.get("k") == "v1"
            await asyncio.gather(*(kv.put(f"k{i}", str(i)) for i in range(20)))
            assert await kv.get("k19") == "19"

    asyncio.run(scenario())


def test_history_with_a_replica_killed_half_way_is_causal(make_cluster: ClusterFactory) -> None:
    """Two sessions interleave writes and reads of shared keys while one replica of each
    shard is killed; every acknowledged write stays visible and the checker finds no
    violation of the session guarantees."""
    cluster = make_cluster()
    recorder = HistoryRecorder()
    addresses = [node.address for node in cluster.nodes]
    clients = {name: Client(addresses) for name in ("alice", "bob")}
    keys = [f"shared-{i}" for i in range(6)]
    try:
        for step in range(80):
            if step == 40:
                view = clients["alice"].view()
                victims = [view.replicas(index)[0] for index in range(len(view.shards))]
                both = clients["alice"].session | clients["bob"].session
                survivors = [a for a in view.all_addresses() if a not in victims]
                wait_until_replicated(survivors, both.metadata)
                for victim in victims:
                    node_at(cluster, victim).kill()
            name = "alice" if step % 2 == 0 else "bob"
            kv = clients[name]
            key = keys[(step * 7) % len(keys)]
            if step % 3 == 0:
                invocation = recorder.invoke(name, "get", key, None, "client")
                reading = kv.fetch(key)
                recorder.ok(invocation, reading.value, node=reading.node)
            else:
                value = f"{name}-{step}"
                invocation = recorder.invoke(name, "put", key, value, "client")
                kv.put(key, value)
                recorder.ok(invocation)
        final = Client(addresses, session=clients["alice"].session | clients["bob"].session)
        with final:
            for key in keys:
                invocation = recorder.invoke("final", "get", key, None, "client")
                recorder.ok(invocation, final.fetch(key).value, final=True)
    finally:
        for kv in clients.values():
            kv.close()
    result = check_history(recorder.history())
    assert result.ok, result.render()
