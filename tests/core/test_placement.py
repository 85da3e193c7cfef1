"""Consistent-hash placement: the containment test carried hand-off reports rely on."""

from __future__ import annotations

from causalkv.core.placement import HashRing, shard_within

KEYS = [f"key-{index}" for index in range(20_000)]


def _keys_of(ring: HashRing, shard: int) -> set[str]:
    return {key for key in KEYS if ring.shard_index_for(key) == shard}


def test_every_shard_lies_within_the_single_shard_of_a_one_shard_view() -> None:
    three = HashRing(["s1", "s2", "s3"])
    one = HashRing(["s9"])
    assert all(shard_within(three, shard, one, 0) for shard in range(3))


def test_a_shard_lies_within_itself_and_not_within_its_neighbours() -> None:
    ring = HashRing(["a", "b", "c"])
    assert shard_within(ring, 1, ring, 1)
    assert not shard_within(ring, 1, ring, 0)
    assert not shard_within(ring, 1, ring, 2)


def test_adding_a_shard_carves_it_out_of_the_others_without_nesting() -> None:
    before = HashRing(["a", "b"])
    after = HashRing(["a", "b", "c"])
    # The keys "a" keeps were all "a"'s before; the new shard "c" took keys from both.
    assert shard_within(after, 0, before, 0)
    assert shard_within(after, 1, before, 1)
    assert not shard_within(after, 2, before, 0)
    assert not shard_within(after, 2, before, 1)
    # A bigger shard never lies within a smaller piece of it.
    assert not shard_within(before, 0, after, 0)


def test_containment_agrees_with_the_keys_themselves() -> None:
    rings = [HashRing(["a", "b"]), HashRing(["a", "b", "c"]), HashRing(["b", "c"])]
    for inner in rings:
        for outer in rings:
            for inner_shard in range(len(inner.shard_names)):
                for outer_shard in range(len(outer.shard_names)):
                    claimed = shard_within(inner, inner_shard, outer, outer_shard)
                    if claimed:
                        assert _keys_of(inner, inner_shard) <= _keys_of(outer, outer_shard)
                    else:
                        assert not _keys_of(inner, inner_shard) <= _keys_of(outer, outer_shard)
