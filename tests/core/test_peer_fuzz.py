"""Property-based fuzzing of what peers can send: random (type-valid but
semantically arbitrary) messages of every kind, from members and from strangers,
must never make the replica raise, and messages from a node outside the view
must leave its data and clock untouched. Random bytes into the peer decoder are
refused cleanly."""

from __future__ import annotations

import contextlib

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from causalkv.core.messages import (
    Commit,
    CommitAck,
    Envelope,
    NewerView,
    PeerMessage,
    Prepare,
    Prepared,
    Push,
    Superseded,
    SyncDelta,
    SyncRequest,
    TransferAck,
    TransferChunk,
    ViewQuery,
    WireNode,
    WireShard,
    WireVersion,
    WireView,
)
from causalkv.core.token import Token
from causalkv.runtime.peer_protocol import call_decoder
from tests.core.local_cluster import LocalCluster, sharded_view

NODES = [f"10.1.0.{i}:8081" for i in range(1, 5)]

small = st.integers(min_value=-2, max_value=70)
epochs = st.integers(min_value=0, max_value=5)
writers = st.one_of(st.binary(min_size=14, max_size=14), st.binary(max_size=20))
pairs = st.lists(st.tuples(writers, st.integers(min_value=-1, max_value=2**63)), max_size=4)
keys = st.one_of(st.sampled_from(["a", "b", "k1", "k2"]), st.text(max_size=8))
versions = st.builds(
    WireVersion,
    key=keys,
    writer=writers,
    seq=small,
    lamport=small,
    deps=pairs,
    value=st.one_of(st.none(), st.text(max_size=8)),
)
addresses = st.one_of(st.sampled_from(NODES), st.sampled_from(["10.9.9.9:1", "", "x"]))
nodes = st.builds(WireNode, address=addresses, node_id=st.sampled_from(["1", "2", "3", "", "1"]))
views = st.builds(
    WireView,
    epoch=epochs,
    flat=st.booleans(),
    shards=st.lists(
        st.builds(
            WireShard, name=st.sampled_from(["a", "b", "", "a"]), nodes=st.lists(nodes, max_size=3)
        ),
        max_size=3,
    ),
)
digests = st.binary(max_size=20)
messages: st.SearchStrategy[PeerMessage] = st.one_of(
    st.builds(Push, epoch=epochs, versions=st.lists(versions, max_size=4)),
    st.builds(SyncRequest, epoch=epochs, request_id=small, known=pairs),
    st.builds(
        SyncDelta,
        epoch=epochs,
        request_id=small,
        chunk_index=small,
        final=st.booleans(),
        versions=st.lists(versions, max_size=4),
        known=pairs,
    ),
    st.builds(Prepare, proposal=views, previous=st.one_of(st.none(), views), coordinator=addresses),
    st.builds(Prepared, epoch=epochs, digest=digests),
    st.builds(Commit, proposal=views, previous=st.one_of(st.none(), views)),
    st.builds(CommitAck, epoch=epochs, digest=digests),
    st.builds(
        Superseded, epoch=epochs, digest=digests, winner=views, winner_committed=st.booleans()
    ),
    st.builds(NewerView, view=views, previous=st.one_of(st.none(), views)),
    st.builds(
        TransferChunk,
        epoch=epochs,
        digest=digests,
        generation=small,
        chunk_index=small,
        chunk_count=small,
        versions=st.lists(versions, max_size=4),
        source_epoch=epochs,
        source_digest=digests,
        source_shard=small,
        source_incarnation=st.binary(max_size=8),
        known=pairs,
    ),
    st.builds(TransferAck, epoch=epochs, digest=digests, generation=small),
    st.builds(ViewQuery, epoch=epochs),
)
DATA_MESSAGES = (
    Push,
    SyncRequest,
    SyncDelta,
    TransferChunk,
    TransferAck,
    Prepared,
    CommitAck,
    ViewQuery,
)


def populated_cluster() -> LocalCluster:
    cluster = LocalCluster(NODES)
    cluster.install(sharded_view({"a": NODES[:2], "b": NODES[2:]}))
    token = Token()
    for index in range(12):
        result = cluster.put(NODES[index % 4], f"k{index}", f"v{index}", token)
        assert result.token is not None
        token = result.token
    cluster.tick(rounds=3)
    return cluster


def snapshot(cluster: LocalCluster, address: str) -> tuple[object, ...]:
    replica = cluster.replicas[address]
    items = {
        key: tuple((v.writer, v.seq, v.value) for v in entry)
        for key, entry in replica.store.items()
    }
    view = replica.view
    return (items, dict(replica.known), None if view is None else view.proposal_key)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(addresses, messages), min_size=1, max_size=6))
def test_no_message_sequence_makes_the_replica_raise(batch: list[tuple[str, PeerMessage]]) -> None:
    cluster = populated_cluster()
    target = NODES[0]
    replica = cluster.replicas[target]
    for sender, message in batch:
        output = replica.receive(cluster.now_s, Envelope(sender, target, 1, [message]))
        assert replica._step is None
        for outgoing in output.messages:
            assert outgoing.destination
    cluster.tick(seconds=0.5, rounds=4)
    # The node still serves reads of its own keys.
    for index in range(12):
        owner = cluster.replicas[NODES[0]].view
        if owner is not None and owner.shard_index_for_key(f"k{index}") == 0:
            result = cluster.get(target, f"k{index}")
            assert result.kind.value in ("ok", "not-found", "no-view", "not-member", "forward")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages.filter(lambda m: isinstance(m, DATA_MESSAGES)), min_size=1, max_size=6))
def test_strangers_cannot_change_data(batch: list[PeerMessage]) -> None:
    cluster = populated_cluster()
    target = NODES[0]
    before = snapshot(cluster, target)
    for message in batch:
        cluster.replicas[target].receive(
            cluster.now_s, Envelope("10.66.0.1:1", target, 1, [message])
        )
    assert snapshot(cluster, target) == before


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.builds(msgspec.msgpack.encode, st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=10), st.binary(max_size=10)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
))))  # fmt: skip
def test_random_bytes_never_crash_the_peer_decoder(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError, RecursionError):
        call_decoder.decode(data)
