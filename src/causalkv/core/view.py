"""The view: which shards exist and which nodes replicate each.

A view is installed with an *epoch*. Views are compared by ``(epoch,
digest)``, so concurrent proposals of different views with the same epoch
still have one deterministic winner everywhere, and the same view proposed by
many nodes at once is one and the same proposal.

Shards are kept sorted by name; a shard's *index* (its position in that order)
is part of writer identities and of the ring. Nodes keep the order in which the
operator listed them, because the SyncKV dialect returns its flat list in the
order it was set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from causalkv.core.placement import HashRing, ring_for

FLAT_SHARD_NAME = "shard0"
NODES_PER_VIEW_MAX = 1024
SHARDS_PER_VIEW_MAX = 256
ADDRESS_CHARS_MAX = 261  # a DNS name (253) + ":" + port


class ViewError(ValueError):
    """A proposed view is malformed."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    address: str
    node_id: str


@dataclass(frozen=True, slots=True)
class ShardSpec:
    name: str
    nodes: tuple[NodeSpec, ...]


@dataclass(frozen=True)
class View:
    """An installed or proposed view. ``epoch`` 0 means "not installed"."""

    epoch: int
    shards: tuple[ShardSpec, ...]
    flat: bool = False
    _by_address: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for index, shard in enumerate(self.shards):
            for node in shard.nodes:
                self._by_address[node.address] = index

    @cached_property
    def digest(self) -> bytes:
        """Identity of the view's content (independent of the epoch)."""
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update(b"flat" if self.flat else b"sharded")
        for shard in self.shards:
            hasher.update(b"\x00S" + shard.name.encode())
            for node in shard.nodes:
                hasher.update(b"\x00N" + node.address.encode() + b"\x00" + node.node_id.encode())
        return hasher.digest()

    @property
    def view_tag(self) -> int:
        """Two bytes of the digest, carried in writer identities."""
        return int.from_bytes(self.digest[:2], "big")

    @property
    def proposal_key(self) -> tuple[int, bytes]:
        """Total order on proposals: higher wins."""
        return (self.epoch, self.digest)

    @cached_property
    def ring(self) -> HashRing:
        return ring_for([shard.name for shard in self.shards])

    def with_epoch(self, epoch: int) -> View:
        return View(epoch, self.shards, self.flat)

    def same_content(self, other: View | None) -> bool:
        return other is not None and self.digest == other.digest

    def shard_index_of_node(self, address: str) -> int | None:
        return self._by_address.get(address)

    def contains(self, address: str) -> bool:
        return address in self._by_address

    def shard_index_for_key(self, key: str) -> int:
        return self.ring.shard_index_for(key)

    def replicas(self, shard_index: int) -> tuple[str, ...]:
        return tuple(node.address for node in self.shards[shard_index].nodes)

    def all_addresses(self) -> Iterator[str]:
        for shard in self.shards:
            for node in shard.nodes:
                yield node.address

    def node_for_id(self, node_id: str) -> NodeSpec | None:
        for shard in self.shards:
            for node in shard.nodes:
                if node.node_id == node_id:
                    return node
        return None

    def to_sharded_json(self) -> dict[str, list[dict[str, object]]]:
        """The sharded dialect's rendering: ``{shard: [{"address", "id"}]}``."""
        return {
            shard.name: [
                {"address": node.address, "id": _render_id(node.node_id)} for node in shard.nodes
            ]
            for shard in self.shards
        }

    def to_flat_json(self) -> list[str]:
        """The SyncKV dialect's rendering: every address, in the order set."""
        return list(self.all_addresses())


def _render_id(node_id: str) -> int | str:
    return int(node_id) if node_id.isdigit() and len(node_id) < 19 else node_id


def validate_address(address: object) -> str:
    """``host:port`` with a non-empty host and a port in 1..65535."""
    if not isinstance(address, str) or not address or len(address) > ADDRESS_CHARS_MAX:
        raise ViewError(f"address must be a 'host:port' string, got {address!r}"[:200])
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ViewError(f"address must be 'host:port', got {address!r}"[:200])
    if any(character.isspace() or character in "/?#@" for character in host):
        raise ViewError(f"address has an invalid host: {address!r}"[:200])
    return address


def parse_sharded_view(body: object) -> View:
    """Parse the ``view`` of ``PUT /view``: an object of shards, or a flat list.

    Returns a view with epoch 0; the caller assigns the epoch.
    """
    if isinstance(body, list):
        return parse_flat_view(body, flat=False)
    if not isinstance(body, dict) or not body:
        raise ViewError("view must be a non-empty object of shard name to node list")
    if len(body) > SHARDS_PER_VIEW_MAX:
        raise ViewError(f"view has more than {SHARDS_PER_VIEW_MAX} shards")
    shards: list[ShardSpec] = []
    seen_addresses: set[str] = set()
    seen_ids: set[str] = set()
    total_nodes = 0
    for name, members in body.items():
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ViewError("shard names must be non-empty strings of at most 256 characters")
        if not isinstance(members, list) or not members:
            raise ViewError(f"shard {name!r} must be a non-empty list of nodes"[:200])
        nodes: list[NodeSpec] = []
        for member in members:
            total_nodes += 1
            if total_nodes > NODES_PER_VIEW_MAX:
                raise ViewError(f"view has more than {NODES_PER_VIEW_MAX} nodes")
            if not isinstance(member, dict):
                raise ViewError(
                    f"nodes of shard {name!r} must be objects with address and id"[:200]
                )
            address = validate_address(member.get("address"))
            raw_id = member.get("id")
            if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
                raise ViewError(f"node {address!r} needs an integer id"[:200])
            node_id = str(raw_id)
            if not node_id or len(node_id) > 64:
                raise ViewError(f"node {address!r} has an invalid id"[:200])
            if address in seen_addresses:
                raise ViewError(f"duplicate address {address!r} in view"[:200])
            if node_id in seen_ids:
                raise ViewError(f"duplicate id {node_id!r} in view"[:200])
            seen_addresses.add(address)
            seen_ids.add(node_id)
            nodes.append(NodeSpec(address, node_id))
        shards.append(ShardSpec(name, tuple(nodes)))
    shards.sort(key=lambda shard: shard.name)
    return View(0, tuple(shards), flat=False)


def parse_flat_view(body: object, flat: bool = True) -> View:
    """Parse a SyncKV view: a non-empty list of distinct ``host:port`` strings
    (or of ``{"address", "id"}`` objects), forming one shard."""
    if not isinstance(body, list) or not body:
        raise ViewError("view must be a non-empty list of addresses")
    if len(body) > NODES_PER_VIEW_MAX:
        raise ViewError(f"view has more than {NODES_PER_VIEW_MAX} nodes")
    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    seen_ids: set[str] = set()
    for position, member in enumerate(body, start=1):
        if isinstance(member, dict):
            address = validate_address(member.get("address"))
            raw_id = member.get("id", position)
            if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
                raise ViewError(f"node {address!r} has an invalid id"[:200])
            node_id = str(raw_id)
        else:
            address = validate_address(member)
            node_id = str(position)
        if address in seen:
            raise ViewError(f"duplicate address {address!r} in view"[:200])
        if node_id in seen_ids:
            raise ViewError(f"duplicate id {node_id!r} in view"[:200])
        seen.add(address)
        seen_ids.add(node_id)
        nodes.append(NodeSpec(address, node_id))
    return View(0, (ShardSpec(FLAT_SHARD_NAME, tuple(nodes)),), flat=flat)


def view_from_shards(shards: Sequence[ShardSpec], epoch: int, flat: bool) -> View:
    return View(epoch, tuple(sorted(shards, key=lambda shard: shard.name)), flat)
