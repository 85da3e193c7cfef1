"""Writer identities: who issued a version.

A *writer* is one node incarnation writing in one shard of one view:
``(epoch, view tag, shard index, incarnation)``. The view tag (two bytes of the
view's digest) tells apart two different views that were both committed with the
same epoch number by concurrent coordinators during a partition; it only ever
matters in that rare race. Every version carries the writer that
accepted it and that writer's sequence number (together: its *dot*).

Why per epoch and per shard, and not simply per node:

* all versions of a writer belong to one shard of one epoch, so a replica can
  tell from the writer alone whether a dependency concerns it (same epoch and
  shard: it must have applied it; older epoch: it must have received it through
  a view change hand-off; same epoch, other shard: none of its business);
* when a view changes, old writers are frozen and new ones start, so metadata
  issued before a change stays meaningful after it;
* the incarnation is drawn (by the runtime) when a data directory is created,
  so a node whose disk was wiped can never reissue a dot it issued before.

Writers are encoded as 14 bytes (epoch u32, view tag u16, shard u16,
incarnation 6 bytes),
big-endian so that byte order equals numeric order. The encoding is the
identity: it is used as a dict key everywhere and compared for tie-breaks.
"""

from __future__ import annotations

from typing import NewType

Writer = NewType("Writer", bytes)

INCARNATION_BYTES = 6
WRITER_BYTES = 4 + 2 + 2 + INCARNATION_BYTES
EPOCH_MAX = 2**32 - 1
VIEW_TAG_MAX = 2**16 - 1
SHARD_INDEX_MAX = 2**16 - 1

_interned: dict[bytes, Writer] = {}


def make_writer(epoch: int, view_tag: int, shard_index: int, incarnation: bytes) -> Writer:
    """Build a writer identity; the same identity is always the same object."""
    if not 0 <= epoch <= EPOCH_MAX:
        raise ValueError(f"epoch out of range: {epoch}")
    if not 0 <= view_tag <= VIEW_TAG_MAX:
        raise ValueError(f"view tag out of range: {view_tag}")
    if not 0 <= shard_index <= SHARD_INDEX_MAX:
        raise ValueError(f"shard index out of range: {shard_index}")
    if len(incarnation) != INCARNATION_BYTES:
        raise ValueError(f"incarnation must be {INCARNATION_BYTES} bytes")
    raw = (
        epoch.to_bytes(4, "big")
        + view_tag.to_bytes(2, "big")
        + shard_index.to_bytes(2, "big")
        + incarnation
    )
    return intern_writer(raw)


def intern_writer(raw: bytes) -> Writer:
    """Validate and intern a 12-byte writer encoding (e.g. from the wire)."""
    writer = _interned.get(raw)
    if writer is None:
        if len(raw) != WRITER_BYTES:
            raise ValueError(f"writer must be {WRITER_BYTES} bytes, got {len(raw)}")
        writer = Writer(bytes(raw))
        _interned[writer] = writer
    return writer


def writer_epoch(writer: Writer) -> int:
    return int.from_bytes(writer[0:4], "big")


def writer_view_tag(writer: Writer) -> int:
    return int.from_bytes(writer[4:6], "big")


def writer_shard_index(writer: Writer) -> int:
    return int.from_bytes(writer[6:8], "big")


def writer_incarnation(writer: Writer) -> bytes:
    return writer[8:]


def describe_writer(writer: Writer) -> str:
    """Human-readable form, e.g. ``e3.1a2b/s1/4f2a9c01d3e7``."""
    return (
        f"e{writer_epoch(writer)}.{writer_view_tag(writer):04x}"
        f"/s{writer_shard_index(writer)}/{writer_incarnation(writer).hex()}"
    )
