"""Edge cases of durability and anti-entropy found by the simulator, replayed
on the bare core: a reply never exposes a write before it is durable, and a
sync delta never advances a clock past versions it did not deliver."""

from __future__ import annotations

from causalkv.core.base import ReplicaSettings
from causalkv.core.keystore import Version
from causalkv.core.messages import Envelope, PeerMessage, SyncRequest, TransferChunk
from causalkv.core.replica import Replica
from causalkv.core.requests import ClientRequest, Operation, OperationResult, ResultKind
from causalkv.core.token import Token
from causalkv.core.view import View, parse_sharded_view
from causalkv.core.wire import pairs_from_clock, version_to_wire
from causalkv.core.writer import make_writer
from tests.core.local_cluster import LocalCluster, sharded_view

A, B, C = (f"10.0.3.{i}:8081" for i in range(1, 4))


def _one_node_view(shard: str) -> View:
    return parse_sharded_view({shard: [{"address": A, "id": 1}]})


def test_a_new_writer_does_not_inherit_the_durability_of_the_old_one() -> None:
    """Seed 151412: writes of the old writer still on their way to disk, then a
    view change; when the old batches became durable they marked the new
    writer's first writes durable too, and a read exposed a write that a crash
    then lost."""
    replica = Replica(ReplicaSettings(), (1).to_bytes(6, "big"))
    now_s = 0.0
    replica.mark_durable(
        max(b.persist_id for b in replica.propose_view(now_s, 1, _one_node_view("s0"), A).persist)
    )
    token = Token()
    old_batches: list[int] = []
    for index in range(5):
        output = replica.submit(
            now_s, ClientRequest(10 + index, Operation.PUT, f"old{index}", token, "v")
        )
        token = output.results[0].result.token or token
        old_batches.extend(batch.persist_id for batch in output.persist)
    # None of those is durable yet; the view changes (a new writer).
    output = replica.propose_view(now_s, 2, _one_node_view("s1"), A)
    assert replica.view is not None and replica.view.epoch == 2
    new_batches = [batch.persist_id for batch in output.persist]
    written = replica.submit(now_s, ClientRequest(30, Operation.PUT, "new", Token(), "fresh"))
    new_batches.extend(batch.persist_id for batch in written.persist)
    # The old writer's batches become durable, not the new one's.
    replica.mark_durable(max(old_batches))
    read = replica.submit(now_s, ClientRequest(31, Operation.GET, "new", Token()))
    (completed,) = read.results
    assert completed.result.kind is ResultKind.OK and completed.result.value == "fresh"
    assert completed.after_persist > max(old_batches), "the read waits for the new write's batch"


def test_a_sync_delta_carries_what_superseded_the_versions_it_vouches_for() -> None:
    """Seed 150056: B held a delete of k (by C's writer) beyond its own clock
    for C's writer; its sync delta to A advanced A's clock for the writer of
    the overwritten value without the delete: A listed the value its session
    had deleted."""
    cluster = LocalCluster([A, B, C])
    assert cluster.install(sharded_view({"s": [A, B, C]})).kind is ResultKind.OK
    for other in (B, C):
        cluster.blocked.update({(A, other), (other, A)})
    written = cluster.put(B, "k", "old")
    assert written.token is not None
    deleted = cluster.request(C, Operation.DELETE, "k", written.token)
    assert isinstance(deleted, OperationResult) and deleted.kind is ResultKind.OK
    cluster.tick(rounds=3)
    replica_b = cluster.replicas[B]
    entry = replica_b.store.entry("k")
    assert entry is not None and [v.value for v in entry] == [None], "B has the delete"
    # C falls silent, and B's clock for C's writer stops short of the delete
    # it holds (as when a delta lands while the clock may not advance).
    for other in (A, B):
        cluster.blocked.update({(C, other), (other, C)})
    c_writer = entry[0].writer
    replica_b.known[c_writer] = entry[0].seq - 1
    cluster.blocked.discard((A, B))
    cluster.blocked.discard((B, A))
    cluster.tick(seconds=0.3, rounds=10)
    replica_a = cluster.replicas[A]
    b_writer = next(w for w in written.token.clock if w != c_writer)
    assert replica_a.known.get(b_writer, 0) >= written.token.clock[b_writer], "A synced with B"
    entry_a = replica_a.store.entry("k")
    assert entry_a is not None and [v.value for v in entry_a] == [None], (
        "A's clock covers the old value: it must hold what superseded it"
    )


def test_a_sync_request_reports_only_a_durable_clock() -> None:
    """Seed 160952: a replica reported a delete in its sync request before the
    delete was durable, crashed and lost it; its peers, seeing it covered, had
    collected the tombstone, and the deleted value came back. The request now
    waits for the state it reports to be durable."""
    cluster = LocalCluster([A, B])
    assert cluster.install(sharded_view({"s": [A, B]})).kind is ResultKind.OK
    cluster.put(A, "k", "v")
    replica_b = cluster.replicas[B]
    # B applies a push from A but its disk has not made it durable yet: take
    # B's next steps by hand, without marking anything durable.
    pushes: list[tuple[str, str, PeerMessage]] = []

    def capture(sender: str, destination: str, message: PeerMessage) -> bool:
        if destination == B:
            pushes.append((sender, destination, message))
            return True
        return False

    cluster.dropping = capture
    written = cluster.request(A, Operation.DELETE, "k", Token(), settle=False)
    assert isinstance(written, OperationResult) and written.kind is ResultKind.OK
    assert pushes, "A pushed the delete to B"
    outputs = [replica_b.receive(cluster.now_s, Envelope(s, d, 1, [m])) for s, d, m in pushes]
    pending = max(batch.persist_id for output in outputs for batch in output.persist)
    tick = replica_b.tick(cluster.now_s + 5.0)
    requests = [o for o in tick.messages if isinstance(o.message, SyncRequest)]
    assert requests, "anti-entropy asks A"
    assert all(o.after_persist >= pending for o in requests), (
        "the request reports the delete: it waits until the delete is durable"
    )


def test_collection_keeps_a_live_version_concurrent_with_a_delete() -> None:
    """Seed 192969: a straggler's late hand-off brought a value concurrent with
    a delete. A had collected the tombstone and showed the value; B still held
    the tombstone, which won the tie-break, and showed nothing, forever."""
    cluster = LocalCluster([A, B, C])
    assert cluster.install(sharded_view({"s": [A, B]})).kind is ResultKind.OK
    first = cluster.put(A, "k", "v0")
    assert first.token is not None
    deleted = cluster.request(A, Operation.DELETE, "k", first.token)
    assert isinstance(deleted, OperationResult) and deleted.kind is ResultKind.OK
    replica_a, replica_b = cluster.replicas[A], cluster.replicas[B]
    # B may not collect yet (as after an abandoned change); A does.
    replica_b.tombstones_held_until_s = float("inf")
    cluster.tick(seconds=0.5, rounds=12)
    assert replica_a.store.entry("k") is None, "A collected the tombstone"
    assert replica_b.store.entry("k") is not None, "B still holds it"
    # C, back from an old view, hands over a value it took concurrently with
    # the delete (it had seen v0 only), with a lower Lamport time.
    (writer_a,) = first.token.clock
    straggler = make_writer(0, 0, 0, cluster.replicas[C].incarnation)
    late = Version(straggler, 1, 1, {writer_a: first.token.clock[writer_a]}, "late")
    view = replica_a.view
    assert view is not None
    for owner in (A, B):
        # Its report vouches for its own writer (it held the key's shard then).
        chunk = TransferChunk(
            view.epoch,
            view.digest,
            7,
            0,
            1,
            [version_to_wire("k", late)],
            0,
            b"",
            0,
            cluster.replicas[C].incarnation,
            pairs_from_clock({straggler: 1}),
            1,
        )
        cluster.queue.append((C, owner, chunk))
    cluster.pump()
    replica_b.tombstones_held_until_s = float("-inf")
    cluster.tick(seconds=0.5, rounds=12)
    values = {address: cluster.replicas[address].winner_value("k") for address in (A, B)}
    assert values == {A: "late", B: "late"}, values
