"""Property tests of the core's building blocks against simple references:
clock merge laws, token encoding, tie-break determinism, placement balance and
movement, and token size bounds."""

from __future__ import annotations

import contextlib
import random
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from causalkv.core.clock import Clock, dominates, merge
from causalkv.core.keystore import KeyStore, Version, winner_of
from causalkv.core.placement import HashRing
from causalkv.core.token import Token, TokenError, decode_token, decode_token_bytes, encode_token
from causalkv.core.writer import Writer, make_writer

writers = st.builds(
    make_writer,
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(0, 4),
    st.binary(min_size=6, max_size=6),
)
clocks = st.dictionaries(writers, st.integers(1, 2**40), max_size=8)


@given(clocks, clocks)
def test_merge_is_commutative(a: Clock, b: Clock) -> None:
    assert merge(a, b) == merge(b, a)


@given(clocks, clocks, clocks)
def test_merge_is_associative(a: Clock, b: Clock, c: Clock) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(clocks)
def test_merge_is_idempotent(a: Clock) -> None:
    assert merge(a, a) == a


@given(clocks, clocks)
def test_merge_dominates_both(a: Clock, b: Clock) -> None:
    merged = merge(a, b)
    assert dominates(merged, a) and dominates(merged, b)


@given(clocks, st.integers(0, 2**32 - 1))
def test_token_round_trip(clock: Clock, epoch_floor: int) -> None:
    token = Token(clock, epoch_floor)
    assert decode_token(encode_token(token)) == token


@given(st.binary(max_size=200))
def test_token_decoder_rejects_garbage_cleanly(data: bytes) -> None:
    with contextlib.suppress(TokenError):
        decode_token_bytes(data)


@given(
    st.one_of(
        st.integers(), st.text(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers())
    )
)
def test_token_metadata_shapes_are_validated(metadata: object) -> None:
    with contextlib.suppress(TokenError):
        decode_token(metadata)


def _random_history(rng: random.Random, size: int) -> list[Version]:
    """Versions of one key forming a causal DAG with transitively closed clocks."""
    incarnations = [bytes([i]) * 6 for i in range(1, 5)]
    writer_list = [make_writer(1, 0, 0, incarnation) for incarnation in incarnations]
    sequences = dict.fromkeys(writer_list, 0)
    versions: list[Version] = []
    for _ in range(size):
        writer = rng.choice(writer_list)
        sequences[writer] += 1
        seen = rng.sample(versions, k=min(len(versions), rng.randint(0, 3)))
        deps: Clock = {}
        lamport = 0
        for earlier in seen:
            deps = merge(deps, earlier.clock())
            lamport = max(lamport, earlier.lamport)
        same_writer = [v for v in versions if v.writer == writer]
        for earlier in same_writer:
            deps = merge(deps, earlier.clock())
            lamport = max(lamport, earlier.lamport)
        deps.pop(writer, None)
        versions.append(Version(writer, sequences[writer], lamport + 1, deps, f"v{len(versions)}"))
    return versions


@settings(max_examples=200)
@given(st.integers(0, 2**32), st.integers(1, 12))
def test_tie_break_is_order_independent(seed: int, size: int) -> None:
    rng = random.Random(seed)
    history = _random_history(rng, size)
    outcomes = set()
    for _ in range(6):
        order = history[:]
        rng.shuffle(order)
        store = KeyStore()
        for version in order:
            store.apply("k", version)
        entry = store.entry("k")
        assert entry is not None
        outcomes.add((frozenset((v.writer, v.seq) for v in entry), winner_of(entry).value))
    assert len(outcomes) == 1
    ((siblings, winner),) = outcomes
    # The survivors are exactly the versions no other version follows.
    maximal = {
        (v.writer, v.seq) for v in history if not any(v.precedes(other) for other in history)
    }
    assert siblings == maximal
    expected = max((v for v in history if (v.writer, v.seq) in maximal), key=Version.order_key)
    assert winner == expected.value


def _shares(ring: HashRing, keys: list[str]) -> list[int]:
    shares = [0] * len(ring.shard_names)
    for key in keys:
        shares[ring.shard_index_for(key)] += 1
    return shares


def test_placement_is_balanced() -> None:
    keys = [f"key-{i}" for i in range(10_000)]
    for shard_count in range(2, 17):
        ring = HashRing([f"s{i}" for i in range(shard_count)])
        shares = _shares(ring, keys)
        mean = len(keys) / shard_count
        assert max(shares) <= 1.2 * mean, (shard_count, shares)


def test_adding_a_shard_moves_about_its_share() -> None:
    keys = [f"user:{i}" for i in range(20_000)]
    for shard_count in (1, 2, 3, 5, 8):
        before = HashRing([f"s{i}" for i in range(shard_count)])
        after = HashRing([f"s{i}" for i in range(shard_count + 1)])
        moved = sum(before.shard_name_for(k) != after.shard_name_for(k) for k in keys)
        ideal = len(keys) / (shard_count + 1)
        assert abs(moved - ideal) <= 0.1 * ideal, (shard_count, moved, ideal)
        # Keys only ever move to the new shard.
        assert all(
            after.shard_name_for(k) == f"s{shard_count}"
            for k in keys
            if before.shard_name_for(k) != after.shard_name_for(k)
        )


def test_removing_a_shard_moves_only_its_keys() -> None:
    keys = [f"item/{i}" for i in range(10_000)]
    before = HashRing(["a", "b", "c", "d"])
    after = HashRing(["a", "b", "d"])
    for key in keys:
        if before.shard_name_for(key) != "c":
            assert after.shard_name_for(key) == before.shard_name_for(key)


def test_token_size_is_bounded_by_writers_not_operations() -> None:
    writer_count = 9
    all_writers: list[Writer] = [
        make_writer(3, 0x1A2B, i % 3, bytes([i + 1]) * 6) for i in range(writer_count)
    ]
    token = Token()
    sequence = count(1)
    sizes = []
    for operation in range(20_000):
        writer = all_writers[operation % writer_count]
        token.absorb({writer: next(sequence)})
        if operation % 1000 == 999:
            sizes.append(len(encode_token(token)["c"]))
    # Sequence numbers reach 20,000 (3-byte varints): still under 16 bytes per writer.
    assert max(sizes) <= 16 * writer_count + 16, sizes
