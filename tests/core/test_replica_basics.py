"""Core protocol behaviour on a synchronous in-memory cluster: install a view,
read your writes, forwarding decisions, replication, causal waits, resharding."""

from __future__ import annotations

from causalkv.core.requests import Operation, OperationResult, ResultKind
from causalkv.core.token import Token, decode_token, encode_token
from tests.core.local_cluster import LocalCluster, sharded_view

NODES = [f"10.0.0.{i}:8081" for i in range(1, 7)]


def two_shard_cluster() -> LocalCluster:
    cluster = LocalCluster(NODES)
    result = cluster.install(sharded_view({"a": NODES[:3], "b": NODES[3:]}))
    assert result.kind is ResultKind.OK, result
    return cluster


def test_install_reaches_every_node() -> None:
    cluster = two_shard_cluster()
    epochs = {cluster.replicas[a].view.epoch for a in NODES}  # type: ignore[union-attr]
    assert epochs == {1}
    assert [cluster.replicas[a].shard_index for a in NODES] == [0, 0, 0, 1, 1, 1]


def test_write_then_read_everywhere() -> None:
    cluster = two_shard_cluster()
    written = cluster.put(NODES[0], "k", "v1")
    assert written.kind is ResultKind.OK and written.created
    for address in NODES:
        read = cluster.get(address, "k", written.token)
        assert read.kind is ResultKind.OK and read.value == "v1", (address, read)


def test_overwrite_is_not_created_and_wins() -> None:
    cluster = two_shard_cluster()
    first = cluster.put(NODES[0], "k", "v1")
    second = cluster.put(NODES[4], "k", "v2", first.token)
    assert second.kind is ResultKind.OK and not second.created
    for address in NODES:
        assert cluster.get(address, "k", second.token).value == "v2"


def test_unmet_dependency_waits_then_times_out() -> None:
    cluster = two_shard_cluster()
    owner_shard = cluster.replicas[NODES[0]].view.shard_index_for_key("k")  # type: ignore[union-attr]
    replicas = NODES[:3] if owner_shard == 0 else NODES[3:]
    # Cut one replica off from the others, write on another replica, read on the cut one.
    cut = replicas[2]
    for other in replicas[:2]:
        cluster.blocked.add((other, cut))
        cluster.blocked.add((cut, other))
    written = cluster.put(replicas[0], "k", "v")
    pending = cluster.request(cut, Operation.GET, "k", written.token)
    assert isinstance(pending, int), "the read must wait for its dependency"
    cluster.tick(seconds=21.0)
    result = cluster.results.pop(pending)
    assert result.kind is ResultKind.DEPENDENCY_TIMEOUT


def test_unmet_dependency_released_by_heal() -> None:
    cluster = two_shard_cluster()
    owner_shard = cluster.replicas[NODES[0]].view.shard_index_for_key("k")  # type: ignore[union-attr]
    replicas = NODES[:3] if owner_shard == 0 else NODES[3:]
    cut = replicas[2]
    for other in replicas[:2]:
        cluster.blocked.add((other, cut))
        cluster.blocked.add((cut, other))
    written = cluster.put(replicas[0], "k", "v")
    pending = cluster.request(cut, Operation.GET, "k", written.token)
    assert isinstance(pending, int)
    cluster.blocked.clear()
    cluster.tick(seconds=0.3, rounds=3)
    result = cluster.results.pop(pending)
    assert result.kind is ResultKind.OK and result.value == "v"


def test_token_round_trip_and_cross_shard_inheritance() -> None:
    cluster = two_shard_cluster()
    view = cluster.replicas[NODES[0]].view
    assert view is not None
    keys = [f"key{i}" for i in range(40)]
    key_a = next(k for k in keys if view.shard_index_for_key(k) == 0)
    key_b = next(k for k in keys if view.shard_index_for_key(k) == 1)
    first = cluster.put(NODES[0], key_a, "x")
    assert first.token is not None
    wire = encode_token(first.token)
    token = decode_token(wire)
    second = cluster.put(NODES[3], key_b, "y", token)
    # A reader of key_b inherits the dependency on key_a's write.
    read = cluster.get(NODES[5], key_b)
    assert read.value == "y" and read.token is not None
    assert first.token.clock.items() <= read.token.clock.items()
    assert second.kind is ResultKind.OK


def test_list_is_shard_local_and_complete() -> None:
    cluster = two_shard_cluster()
    token = Token()
    for i in range(50):
        result = cluster.put(NODES[i % 6], f"k{i}", f"v{i}", token)
        assert result.token is not None
        token = result.token
    cluster.tick(rounds=3)
    seen: dict[str, str] = {}
    for address in (NODES[0], NODES[3]):
        listing = cluster.request(address, Operation.LIST, None, token)
        assert isinstance(listing, OperationResult) and listing.items is not None
        assert not (seen.keys() & listing.items.keys())
        seen.update(listing.items)
    assert seen == {f"k{i}": f"v{i}" for i in range(50)}


def test_delete_then_not_found() -> None:
    cluster = two_shard_cluster()
    written = cluster.put(NODES[0], "gone", "v")
    deleted = cluster.request(NODES[1], Operation.DELETE, "gone", written.token)
    assert isinstance(deleted, OperationResult) and deleted.kind is ResultKind.OK
    again = cluster.request(NODES[2], Operation.DELETE, "gone", deleted.token)
    assert isinstance(again, OperationResult) and again.kind is ResultKind.NOT_FOUND
    for address in NODES:
        assert cluster.get(address, "gone", deleted.token).kind is ResultKind.NOT_FOUND


def test_reshard_keeps_every_key() -> None:
    cluster = LocalCluster([*NODES, "10.0.0.7:8081", "10.0.0.8:8081", "10.0.0.9:8081"])
    cluster.install(sharded_view({"a": NODES[:3], "b": NODES[3:]}))
    token = Token()
    for i in range(300):
        result = cluster.put(NODES[i % 6], f"k{i}", f"v{i}", token)
        assert result.token is not None
        token = result.token
    all_nodes = cluster.addresses
    result = cluster.install(
        sharded_view({"a": all_nodes[:3], "b": all_nodes[3:6], "c": all_nodes[6:]}), via=NODES[2]
    )
    assert result.kind is ResultKind.OK
    assert {cluster.replicas[a].view.epoch for a in all_nodes} == {2}  # type: ignore[union-attr]
    for i in range(300):
        read = cluster.get(all_nodes[i % 9], f"k{i}", token)
        assert read.kind is ResultKind.OK and read.value == f"v{i}", (i, read)
    total = sum(len(cluster.replicas[a].store) for a in all_nodes)
    assert total == 300 * 3
