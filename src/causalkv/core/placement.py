"""Consistent-hash placement of keys on shards, with virtual nodes.

Each shard owns ``VIRTUAL_NODES_PER_SHARD`` points on a 64-bit ring, placed by
hashing ``"<shard name>#<i>"``; a key belongs to the shard of the first point
at or after the key's own hash (wrapping around). The ring depends on shard
*names* only, never on which nodes replicate a shard, so adding or removing a
replica moves no keys, adding one shard to S moves about 1/(S+1) of them, and
removing a shard moves only that shard's keys.

Hashes are BLAKE2b-64: stable across processes, platforms and Python versions
(unlike ``hash()``), and fast enough (well under a microsecond per key).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

VIRTUAL_NODES_PER_SHARD = 512


def key_position(key: str) -> int:
    """Position of a key on the ring."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _point_position(shard_name: str, index: int) -> int:
    digest = hashlib.blake2b(f"{shard_name}#{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_rings: dict[tuple[str, ...], HashRing] = {}


def ring_for(shard_names: Sequence[str]) -> HashRing:
    """A shared ring per set of shard names: building one costs milliseconds, and
    every view message would otherwise rebuild it."""
    names = tuple(shard_names)
    ring = _rings.get(names)
    if ring is None:
        if len(_rings) >= 64:
            _rings.clear()
        ring = _rings[names] = HashRing(names)
    return ring


class HashRing:
    """Maps keys to shard indexes (positions in ``shard_names``)."""

    __slots__ = ("_owners", "_positions", "shard_names")

    def __init__(
        self, shard_names: Sequence[str], virtual_nodes: int = VIRTUAL_NODES_PER_SHARD
    ) -> None:
        if not shard_names:
            raise ValueError("a ring needs at least one shard")
        self.shard_names = tuple(shard_names)
        points = sorted(
            (_point_position(name, index), shard_index)
            for shard_index, name in enumerate(self.shard_names)
            for index in range(virtual_nodes)
        )
        self._positions = [position for position, _ in points]
        self._owners = [shard_index for _, shard_index in points]

    def shard_index_for(self, key: str) -> int:
        return self.shard_index_at(key_position(key))

    def shard_index_at(self, position: int) -> int:
        slot = bisect.bisect_left(self._positions, position)
        if slot == len(self._positions):
            slot = 0
        return self._owners[slot]

    def shard_name_for(self, key: str) -> str:
        return self.shard_names[self.shard_index_for(key)]


_containment: dict[tuple[tuple[str, ...], int, tuple[str, ...], int], bool] = {}


def shard_within(inner: HashRing, inner_shard: int, outer: HashRing, outer_shard: int) -> bool:
    """True when every key ``inner`` places on ``inner_shard`` is one ``outer``
    places on ``outer_shard`` (so a statement about all keys of the outer shard
    holds for all keys of the inner one).

    The union of both rings' points cuts the ring into arcs on which each ring
    has a single owner; the test walks those arcs. Results are cached: a few
    thousand bisections per pair of rings."""
    if len(outer.shard_names) == 1:
        return True
    cache_key = (inner.shard_names, inner_shard, outer.shard_names, outer_shard)
    cached = _containment.get(cache_key)
    if cached is not None:
        return cached
    boundaries = sorted(set(inner._positions) | set(outer._positions))
    # The arc past the last point wraps around to the first point's owner.
    probes = boundaries + ([boundaries[-1] + 1] if boundaries[-1] < 2**64 - 1 else [])
    result = all(
        outer.shard_index_at(position) == outer_shard
        for position in probes
        if inner.shard_index_at(position) == inner_shard
    )
    if len(_containment) >= 256:
        _containment.clear()
    _containment[cache_key] = result
    return result
