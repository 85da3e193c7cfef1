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
