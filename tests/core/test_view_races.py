"""First views that race: nodes that met in a proposal find each other again
even when two first views commit over disjoint members (seed 122285)."""

from __future__ import annotations

import itertools

from causalkv.core.messages import Commit, NewerView, PeerMessage, TransferChunk
from causalkv.core.replica import Replica
from causalkv.core.requests import Operation, ResultKind
from causalkv.core.token import Token
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
    cluster.propose(sharded_view({"s": [A, B, C, D]}), via=E)
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
    cluster.propose(sharded_view({"v0": [A], "v1": [B, C, D]}), via=A)
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


def test_a_later_report_from_the_same_sender_does_not_replace_an_earlier_one() -> None:
    """C, mid-change, got A's first-hand report of the shard A left; then A
    sent keys it carried, with a second-hand report from the new view. Both
    must count: the second used to replace the first (seed 142178)."""
    cluster = LocalCluster([A, B, C])
    assert cluster.install(sharded_view({"s0": [A], "s1": [B, C]}), via=B).kind is ResultKind.OK
    first = cluster.replicas[A].view
    assert first is not None
    keys = [k for k in (f"k{i}" for i in range(200)) if first.shard_index_for_key(k) == 0][:5]
    token = None
    for key in keys:
        token = cluster.put(A, key, f"v-{key}", token).token
    assert token is not None
    cluster.dropping = lambda _s, destination, message: (
        destination == C and isinstance(message, (Commit, NewerView))
    )
    assert cluster.install(sharded_view({"t0": [C], "t1": [B]}), via=B).kind is ResultKind.OK
    change = cluster.replicas[C].change
    assert change is not None and A in change.reports, "C holds A's report, uncommitted"
    second = change.proposal
    # A returns keys it carried, reporting from the view it now serves.
    returned = TransferChunk(
        second.epoch,
        second.digest,
        99,
        0,
        1,
        [],
        second.epoch,
        second.digest,
        -1,
        cluster.replicas[A].incarnation,
        [],
        len(second.shards),
    )
    cluster.queue.append((A, C, returned))
    cluster.pump()
    cluster.dropping = None
    cluster.tick(seconds=0.5, rounds=6)
    assert cluster.replicas[C].view is not None and cluster.replicas[C].view.epoch == 2
    for key in keys:
        read = cluster.get(C, key, token)
        assert read.kind is ResultKind.OK and read.value == f"v-{key}", (key, read)


def test_a_node_prepares_from_the_view_the_proposal_was_made_on() -> None:
    """A node that missed the commit of view 2 gets a proposal made on view 2:
    it serves view 2 first, so its hand-off reports the shard it owns there
    (seed 141503: a hand-off from view 1 vouched for none of it)."""
    cluster = LocalCluster([A, B, C])
    assert cluster.install(sharded_view({"s0": [A], "s1": [B]}), via=B).kind is ResultKind.OK
    cluster.dropping = lambda _s, destination, message: (
        destination == C and isinstance(message, (Commit, NewerView))
    )
    assert cluster.install(sharded_view({"t0": [A], "t1": [C]}), via=B).kind is ResultKind.OK
    missed = cluster.replicas[C].view
    assert missed is None or missed.epoch == 1, "C missed the commit of view 2"
    sent: list[TransferChunk] = []

    def watch(sender: str, destination: str, message: PeerMessage) -> bool:
        if sender == C and isinstance(message, TransferChunk):
            sent.append(message)
        # C goes on missing view 2 (it learns it only from the next proposal).
        return destination == C and (
            (isinstance(message, Commit) and message.proposal.epoch == 2)
            or (isinstance(message, NewerView) and message.view.epoch == 2)
        )

    cluster.dropping = watch
    assert cluster.install(sharded_view({"u0": [A, B, C]}), via=B).kind is ResultKind.OK
    assert sent and {chunk.source_epoch for chunk in sent} == {2}
    assert {chunk.source_shard for chunk in sent} == {1}
