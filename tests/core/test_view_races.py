"""First views that race: nodes that met in a proposal find each other again
even when two first views commit over disjoint members (seed 122285)."""

from __future__ import annotations

import itertools

from causalkv.core.messages import Commit, NewerView
from causalkv.core.replica import Replica
from causalkv.core.requests import Operation, ResultKind
from causalkv.core.token import Token
from causalkv.core.view import parse_sharded_view
from tests.core.local_cluster import LocalCluster, sharded_view

A, B, C, D, E = (f"10.0.1.{i}:8081" for i in range(1, 6))


def _partition(cluster: LocalCluster, left: list[str], right: list[str]) -> None:
    for x, y in itertools.product(left, right):
        cluster.blocked.update({(x, y), (y, x)})


def _met_in_a_lost_proposal() -> LocalCluster:
    """E proposes a view of A-D, which hear it, then E vanishes for good."""
    cluster = LocalCluster([A, B, C, D, E])
    for address in (A, B, C, D):
        cluster.blocked.add((address, E))
    view = parse_sharded_view(sharded_view({"s": [A, B, C, D]}))
    cluster._carry(E, cluster.replicas[E].propose_view(cluster.now_s, 1, view, E))
    cluster.pump()
    del cluster.replicas[E]
    for address in (A, B, C, D):
        replica = cluster.replicas[address]
        assert replica.view is None and replica.highest_epoch == 1
        assert set(replica.acquaintances) == {A, B, C, D, E} - {address}
    return cluster


def test_disjoint_first_views_meet_after_the_partition_heals() -> None:
    cluster = _met_in_a_lost_proposal()
    _partition(cluster, [A, B], [C, D])
    left = cluster.install(sharded_view({"l": [A, B]}), via=A)
    right = cluster.install(sharded_view({"r": [C, D]}), via=C)
    assert left.kind is ResultKind.OK and right.kind is ResultKind.OK
    views = {address: cluster.replicas[address].view for address in (A, B, C, D)}
    assert views[A] == views[B] and views[C] == views[D] and views[A] != views[C]
    assert views[A] is not None and views[A].epoch == 2 and views[C] is not None
    assert views[C].epoch == 2, "both first views committed at the same epoch"
    # Members of the served view are no longer acquaintances; the others stay.
    assert set(cluster.replicas[A].acquaintances) == {C, D, E}
    assert set(cluster.replicas[C].acquaintances) == {A, B, E}

    # Acquaintances survive a restart (a node of the losing side may restart
    # before the partition heals and must still find the others).
    for address in (A, B, C, D):
        old = cluster.replicas[address]
        cluster.replicas[address] = Replica.restore(
            cluster.settings, old.durable_meta, list(old.store.items())
        )
        assert cluster.replicas[address].acquaintances == old.acquaintances

    cluster.blocked.clear()
    for address in (A, B, C, D):
        cluster.blocked.add((address, E))
    cluster.tick(seconds=0.5, rounds=60)
    keys = {cluster.replicas[address].view.proposal_key for address in (A, B, C, D)}  # type: ignore[union-attr]
    assert len(keys) == 1, "one view everywhere once the sides can talk"


def test_a_view_sent_to_every_node_leaves_no_acquaintances() -> None:
    nodes = [A, B, C, D]
    cluster = LocalCluster(nodes)
    result = cluster.install(sharded_view({"x": [A, B], "y": [C, D]}))
    assert result.kind is ResultKind.OK
    for address in nodes:
        assert cluster.replicas[address].acquaintances == {}


def test_departure_report_survives_a_lost_handoff_and_a_restart() -> None:
    """A prepares view 2, misses its commit, abandons it for a view 3 of its
    own and takes writes in view 1 nobody else sees. It then learns view 2, and
    its hand-off to C (who owns some of those keys in view 2) is lost when A
    restarts. After view 4 everyone must cover A's writes: A passes on the
    report it made of the shard it left with every later hand-off (seed 20206)."""
    cluster = LocalCluster([A, B, C, D])
    assert cluster.install(sharded_view({"s0": [A, D], "s1": [B]}), via=B).kind is ResultKind.OK
    first = cluster.replicas[A].view
    assert first is not None
    keys = [k for k in (f"k{i}" for i in range(200)) if first.shard_index_for_key(k) == 0][:12]
    token = None
    for key in keys[:6]:
        token = cluster.put(A, key, f"early-{key}", token).token

    # View 2 commits, but A never hears of the commit.
    cluster.dropping = lambda _s, destination, message: (
        destination == A and isinstance(message, (Commit, NewerView))
    )
    second = sharded_view({"t0": [A, D], "t1": [C], "t2": [B]})
    assert cluster.install(second, via=B).kind is ResultKind.OK
    assert cluster.replicas[A].view is not None and cluster.replicas[A].view.epoch == 1
    # Cut off, A takes a view change of its own, which abandons view 2 there
    # and releases writes that waited for it: they are taken in view 1.
    _partition(cluster, [A], [B, C, D])
    waiting = [
        cluster.request(A, Operation.PUT, key, token or Token(), f"late-{key}") for key in keys[6:]
    ]
    assert all(isinstance(request_id, int) for request_id in waiting), "writes wait"
    cluster._carry(
        A,
        cluster.replicas[A].propose_view(
            cluster.now_s, 98, parse_sharded_view(sharded_view({"v0": [A], "v1": [B, C, D]})), A
        ),
    )
    cluster.pump()
    late = [cluster.results.pop(request_id) for request_id in waiting]  # type: ignore[arg-type]
    assert all(result.kind is ResultKind.OK for result in late), late
    token = late[-1].token
    assert token is not None

    # A learns view 2, but its hand-off to C is lost: C is unreachable, and A
    # restarts before C is back.
    cluster.dropping = None
    cluster.blocked.clear()
    _partition(cluster, [A], [C])
    cluster.tick(seconds=0.5, rounds=4)
    assert cluster.replicas[A].view is not None and cluster.replicas[A].view.epoch == 2
    assert cluster.replicas[A].departures, "A still holds the data of the shard it left"
    old = cluster.replicas[A]
    cluster.replicas[A] = Replica.restore(
        cluster.settings, old.durable_meta, list(old.store.items())
    )
    assert cluster.replicas[A].departures == old.departures
    cluster.blocked.clear()
    assert cluster.install(sharded_view({"u0": [A, B, C]}), via=B).kind is ResultKind.OK
    cluster.tick(seconds=0.5, rounds=10)
    for address in (A, B, C):
        for key in keys:
            read = cluster.get(address, key, token)
            assert read.kind is ResultKind.OK, (address, key, read)
            expected = f"late-{key}" if key in keys[6:] else f"early-{key}"
            assert read.value == expected, (address, key, read)
    assert not cluster.replicas[A].departures, "handed off and dropped: nothing left to vouch for"
