"""Conversions between core objects and wire messages, with validation.

Everything that arrives from a peer passes through ``version_from_wire`` or
``view_from_wire``; both raise ``PeerInputError`` on anything malformed, so a
forged or corrupted message is refused before it can touch replica state.
"""

from __future__ import annotations

from collections.abc import Iterable

from causalkv.core.clock import Clock, ClockView
from causalkv.core.keystore import Version
from causalkv.core.messages import WireNode, WirePairs, WireShard, WireVersion, WireView
from causalkv.core.token import SEQUENCE_MAX
from causalkv.core.view import (
    NodeSpec,
    ShardSpec,
    View,
    ViewError,
    parse_flat_view,
    validate_address,
    view_from_shards,
)
from causalkv.core.writer import WRITER_BYTES, Writer, intern_writer

KEY_BYTES_MAX = 2048
VALUE_BYTES_MAX = 8 * 1024 * 1024
DEPS_ENTRIES_MAX = 16_384


class PeerInputError(ValueError):
    """A peer sent something malformed."""


def pairs_from_clock(clock: ClockView) -> WirePairs:
    return [(writer, seq) for writer, seq in clock.items() if seq > 0]


def clock_from_pairs(pairs: Iterable[tuple[bytes, int]]) -> Clock:
    clock: Clock = {}
    for count, (raw, seq) in enumerate(pairs):
        if count >= DEPS_ENTRIES_MAX:
            raise PeerInputError("clock has too many entries")
        if len(raw) != WRITER_BYTES:
            raise PeerInputError("clock entry has a malformed writer")
        if not 0 < seq <= SEQUENCE_MAX:
            raise PeerInputError("clock entry has an out-of-range sequence number")
        writer = intern_writer(raw)
        if seq > clock.get(writer, 0):
            clock[writer] = seq
    return clock


def version_to_wire(key: str, version: Version) -> WireVersion:
    return WireVersion(
        key,
        version.writer,
        version.seq,
        version.lamport,
        list(version.dep_items()),
        version.value,
    )


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise PeerInputError("key must be a non-empty string")
    if len(key) > KEY_BYTES_MAX:
        raise PeerInputError("key is too long")
    try:
        encoded_length = len(key.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise PeerInputError("key is not valid UTF-8") from error
    if encoded_length > KEY_BYTES_MAX:
        raise PeerInputError("key is too long")
    return key


def version_from_wire(wire: WireVersion) -> tuple[str, Version]:
    key = validate_key(wire.key)
    if len(wire.writer) != WRITER_BYTES:
        raise PeerInputError("version has a malformed writer")
    if not 0 < wire.seq <= SEQUENCE_MAX or not 0 < wire.lamport <= SEQUENCE_MAX:
        raise PeerInputError("version has an out-of-range sequence number or timestamp")
    if wire.value is not None and len(wire.value) > VALUE_BYTES_MAX:
        raise PeerInputError("version value is too large")
    writer: Writer = intern_writer(wire.writer)
    deps = clock_from_pairs(wire.deps)
    if deps.get(writer, 0) >= wire.seq:
        raise PeerInputError("version depends on itself")
    return key, Version(writer, wire.seq, wire.lamport, deps, wire.value)


def view_to_wire(view: View) -> WireView:
    return WireView(
        view.epoch,
        view.flat,
        [
            WireShard(shard.name, [WireNode(node.address, node.node_id) for node in shard.nodes])
            for shard in view.shards
        ],
    )


def view_from_wire(wire: WireView) -> View:
    try:
        if wire.epoch < 1:
            raise PeerInputError("view epoch must be positive")
        if wire.flat:
            if len(wire.shards) != 1:
                raise PeerInputError("a flat view has exactly one shard")
            flat = parse_flat_view(
                [{"address": node.address, "id": node.node_id} for node in wire.shards[0].nodes]
            )
            return flat.with_epoch(wire.epoch)
        shards: list[ShardSpec] = []
        seen_addresses: set[str] = set()
        seen_ids: set[str] = set()
        seen_names: set[str] = set()
        if not wire.shards:
            raise PeerInputError("view has no shards")
        for shard in wire.shards:
            if not shard.name or shard.name in seen_names or not shard.nodes:
                raise PeerInputError("view has an empty, unnamed or duplicate shard")
            seen_names.add(shard.name)
            nodes = []
            for node in shard.nodes:
                address = validate_address(node.address)
                if address in seen_addresses or not node.node_id or node.node_id in seen_ids:
                    raise PeerInputError("view repeats an address or id")
                seen_addresses.add(address)
                seen_ids.add(node.node_id)
                nodes.append(NodeSpec(address, node.node_id))
            shards.append(ShardSpec(shard.name, tuple(nodes)))
        return view_from_shards(shards, wire.epoch, flat=False)
    except ViewError as error:
        raise PeerInputError(str(error)) from error
