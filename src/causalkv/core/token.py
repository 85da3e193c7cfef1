"""Causal tokens: the opaque ``causal-metadata`` that clients carry.

A token is what a client session has seen: a clock over writers plus the
highest view epoch it has observed. Its size is bounded by the number of
writers (node incarnations that accepted writes, per epoch), never by the
number of keys, clients or operations.

On the wire a token is a JSON object ``{"c": "<base64url>"}`` (``{}`` for a
fresh client). The base64 text encodes, version 1::

    u8      format version (1)
    uvarint epoch floor             highest view epoch the session observed
    uvarint group count
    per group (sorted by epoch, view tag, shard):
        uvarint epoch, uvarint view tag, uvarint shard index, uvarint entry count
        per entry (sorted by incarnation): 6-byte incarnation, uvarint sequence

Grouping by (epoch, view tag, shard) keeps an entry at 6 bytes + a varint (about 12
base64 characters), so a token costs well under 16 bytes per writer.

Decoding is strict and bounded: anything malformed raises ``TokenError``,
which the API turns into a 400; it never reaches the replica state.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from causalkv.core.clock import Clock, merge, merge_into, sorted_pairs
from causalkv.core.writer import (
    EPOCH_MAX,
    INCARNATION_BYTES,
    SHARD_INDEX_MAX,
    VIEW_TAG_MAX,
    Writer,
    make_writer,
    writer_epoch,
    writer_incarnation,
    writer_shard_index,
    writer_view_tag,
)

TOKEN_FORMAT_VERSION = 1
TOKEN_FIELD = "c"
TOKEN_TEXT_CHARS_MAX = 256 * 1024
TOKEN_ENTRIES_MAX = 16_384
SEQUENCE_MAX = 2**63 - 1


class TokenError(ValueError):
    """The causal metadata a client sent is not a valid token."""


@dataclass(slots=True)
class Token:
    """A decoded causal token. ``clock`` maps writers to sequence numbers."""

    clock: Clock = field(default_factory=dict)
    epoch_floor: int = 0

    def merged(self, other: Token) -> Token:
        return Token(merge(self.clock, other.clock), max(self.epoch_floor, other.epoch_floor))

    def absorb(self, clock: Mapping[Writer, int], epoch: int = 0) -> None:
        """Add a version's clock (and the epoch it was read in) to this token, in place."""
        merge_into(self.clock, clock)
        if epoch > self.epoch_floor:
            self.epoch_floor = epoch

    def copy(self) -> Token:
        return Token(dict(self.clock), self.epoch_floor)

    def is_empty(self) -> bool:
        return not self.clock and self.epoch_floor == 0


def _write_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def uvarint(self, maximum: int) -> int:
        result = 0
        shift = 0
        while True:
            if self.position >= len(self.data):
                raise TokenError("causal metadata is truncated")
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if result > maximum:
                raise TokenError("causal metadata holds an out-of-range number")
            if byte < 0x80:
                return result
            shift += 7

    def raw(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise TokenError("causal metadata is truncated")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk


def encode_token_bytes(token: Token) -> bytes:
    out = bytearray([TOKEN_FORMAT_VERSION])
    _write_uvarint(out, token.epoch_floor)
    groups: dict[tuple[int, int, int], list[tuple[bytes, int]]] = {}
    for writer, seq in sorted_pairs(token.clock):
        key = (writer_epoch(writer), writer_view_tag(writer), writer_shard_index(writer))
        groups.setdefault(key, []).append((writer_incarnation(writer), seq))
    _write_uvarint(out, len(groups))
    for (epoch, view_tag, shard_index), entries in sorted(groups.items()):
        _write_uvarint(out, epoch)
        _write_uvarint(out, view_tag)
        _write_uvarint(out, shard_index)
        _write_uvarint(out, len(entries))
        for incarnation, seq in entries:
            out += incarnation
            _write_uvarint(out, seq)
    return bytes(out)


def decode_token_bytes(data: bytes) -> Token:
    reader = _Reader(data)
    version = reader.uvarint(255)
    if version != TOKEN_FORMAT_VERSION:
        raise TokenError(f"causal metadata has unknown format version {version}")
    epoch_floor = reader.uvarint(EPOCH_MAX)
    group_count = reader.uvarint(TOKEN_ENTRIES_MAX)
    clock: Clock = {}
    entries_total = 0
    for _ in range(group_count):
        epoch = reader.uvarint(EPOCH_MAX)
        view_tag = reader.uvarint(VIEW_TAG_MAX)
        shard_index = reader.uvarint(SHARD_INDEX_MAX)
        count = reader.uvarint(TOKEN_ENTRIES_MAX)
        entries_total += count
        if entries_total > TOKEN_ENTRIES_MAX:
            raise TokenError("causal metadata has too many entries")
        for _ in range(count):
            incarnation = reader.raw(INCARNATION_BYTES)
            seq = reader.uvarint(SEQUENCE_MAX)
            if seq == 0:
                raise TokenError("causal metadata holds a zero sequence number")
            writer = make_writer(epoch, view_tag, shard_index, incarnation)
            if writer in clock:
                raise TokenError("causal metadata repeats a writer")
            clock[writer] = seq
    if reader.position != len(data):
        raise TokenError("causal metadata has trailing bytes")
    return Token(clock, epoch_floor)


def encode_token(token: Token) -> dict[str, str]:
    """The JSON object a client receives. An empty token is ``{}``."""
    if token.is_empty():
        return {}
    text = base64.urlsafe_b64encode(encode_token_bytes(token)).rstrip(b"=").decode("ascii")
    return {TOKEN_FIELD: text}


def decode_token(metadata: object) -> Token:
    """Parse the ``causal-metadata`` a client sent.

    ``None`` and ``{}`` are a fresh session. Anything but an object of the
    documented shape raises ``TokenError``.
    """
    if metadata is None:
        return Token()
    if not isinstance(metadata, dict):
        raise TokenError("causal-metadata must be a JSON object")
    if not metadata:
        return Token()
    if set(metadata) != {TOKEN_FIELD}:
        unknown = sorted(str(name) for name in metadata if name != TOKEN_FIELD)
        raise TokenError(f"causal-metadata has unexpected fields: {', '.join(unknown)[:200]}")
    text = metadata[TOKEN_FIELD]
    if not isinstance(text, str):
        raise TokenError(f"causal-metadata field {TOKEN_FIELD!r} must be a string")
    if len(text) > TOKEN_TEXT_CHARS_MAX:
        raise TokenError("causal-metadata is too large")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise TokenError("causal-metadata is not valid base64url") from error
    return decode_token_bytes(data)
