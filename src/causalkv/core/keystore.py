"""The versioned key store of one replica.

Theory of operation
-------------------
Every write is a *version*: the value (``None`` for a delete, a tombstone), the
writer and sequence number that identify it (its *dot*), a Lamport timestamp,
and ``deps``, the clock of everything its writer's client had seen plus the
dots of the versions it overwrote on the accepting replica.

Version ``a`` precedes version ``b`` when ``b``'s clock (``deps`` plus its own
dot) contains ``a``'s dot. A key holds the set of its versions that no other
version of it precedes: usually one, several when writes were concurrent
(*siblings*). The visible version is the sibling with the largest
``(lamport, writer)``. Because a version's Lamport time exceeds that of every
version it follows, this rule agrees with causality and picks the same winner
on every replica whatever order versions arrive in: replicas converge.

Each writer also has a *log* of the sequence numbers it still has live versions
for, sorted, so anti-entropy can send a peer "every version of writer W after
sequence s" without scanning the store. Superseded entries are removed lazily.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from causalkv.core.clock import Clock, ClockView
from causalkv.core.writer import WRITER_BYTES, Writer, intern_writer

_SEQ_BYTES = 8
_RECORD_BYTES = WRITER_BYTES + _SEQ_BYTES


def pack_deps(deps: ClockView) -> bytes:
    """Dependencies as packed records (14-byte writer, 8-byte sequence), sorted."""
    return b"".join(
        writer + seq.to_bytes(_SEQ_BYTES, "big") for writer, seq in sorted(deps.items())
    )


class Version:
    """One write of one key. Immutable by convention (``__slots__`` for memory).

    ``deps`` is kept packed in one ``bytes`` (22 bytes per writer) rather than a
    dict: a one-entry dict with its int costs over 200 bytes, the packed form 55,
    and a store holds a million of them. Read it with ``dep`` and ``dep_items``.
    """

    __slots__ = ("deps", "lamport", "seq", "value", "writer")

    def __init__(
        self,
        writer: Writer,
        seq: int,
        lamport: int,
        deps: ClockView | bytes,
        value: str | None,
    ) -> None:
        self.writer = writer
        self.seq = seq
        # Equal numbers share one int object: 28 bytes per version at a million keys.
        self.lamport = seq if lamport == seq else lamport
        if isinstance(deps, bytes):
            if len(deps) % _RECORD_BYTES:
                raise ValueError("packed dependencies have a partial record")
            self.deps = deps
        else:
            self.deps = pack_deps(deps) if deps else b""
        self.value = value

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def order_key(self) -> tuple[bool, int, bytes]:
        """The deterministic tie-break among concurrent versions: higher wins. A
        value beats a concurrent delete (add-wins), then the higher Lamport
        time, then the writer. With deletes losing ties, collecting a tombstone
        never changes what a key shows, even where a concurrent value arrives
        after the tombstone was collected on one replica and not yet on another
        (seed 192969); with the Lamport time first, such replicas diverged."""
        return (self.value is not None, self.lamport, self.writer)

    def dep(self, writer: Writer) -> int:
        """The sequence number of ``writer`` this version depends on (0 if none)."""
        deps = self.deps
        start = 0
        while True:
            index = deps.find(writer, start)
            if index < 0:
                return 0
            if index % _RECORD_BYTES == 0:
                return int.from_bytes(deps[index + WRITER_BYTES : index + _RECORD_BYTES], "big")
            start = index + 1

    def dep_items(self) -> Iterator[tuple[Writer, int]]:
        deps = self.deps
        for index in range(0, len(deps), _RECORD_BYTES):
            yield (
                intern_writer(deps[index : index + WRITER_BYTES]),
                int.from_bytes(deps[index + WRITER_BYTES : index + _RECORD_BYTES], "big"),
            )

    def deps_clock(self) -> Clock:
        return dict(self.dep_items())

    def precedes(self, other: Version) -> bool:
        """True when ``other`` causally follows this version."""
        if other.writer == self.writer:
            return other.seq > self.seq
        return other.dep(self.writer) >= self.seq

    def clock(self) -> Clock:
        """``deps`` plus the version's own dot: what a reader of it depends on."""
        clock = dict(self.dep_items())
        if clock.get(self.writer, 0) < self.seq:
            clock[self.writer] = self.seq
        return clock

    def __repr__(self) -> str:
        return f"Version({self.writer.hex()}:{self.seq}, lamport={self.lamport}, value={self.value!r:.20})"


Entry = tuple[Version, ...]
_Stored = Version | tuple[Version, ...]
"""How the store holds a key: a lone version directly (no tuple), siblings as a tuple."""


def _as_entry(stored: _Stored) -> Entry:
    return (stored,) if type(stored) is Version else stored  # type: ignore[return-value]


def _stored(entry: Entry) -> _Stored:
    return entry[0] if len(entry) == 1 else entry


def winner_of(entry: Entry) -> Version:
    """The visible version among siblings."""
    if len(entry) == 1:
        return entry[0]
    return max(entry, key=Version.order_key)


@dataclass(slots=True)
class ApplyOutcome:
    changed: bool
    """The key's set of versions changed (persist it)."""
    obsolete: bool
    """The version was already superseded here; nothing changed."""


class _WriterLog:
    """Sorted sequence numbers (with their keys) of one writer's live versions."""

    __slots__ = ("dead", "keys", "seqs")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.keys: list[str] = []
        self.dead = 0

    def add(self, seq: int, key: str) -> None:
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)
            self.keys.append(key)
        else:
            slot = bisect.bisect_left(self.seqs, seq)
            self.seqs.insert(slot, seq)
            self.keys.insert(slot, key)


class KeyStore:
    """All versions a replica holds, indexed by key and by writer."""

    def __init__(self) -> None:
        self._entries: dict[str, _Stored] = {}
        self._logs: dict[Writer, _WriterLog] = {}
        self.lamport = 0
        self.live_keys = 0
        """Keys whose visible version is not a tombstone."""
        self.tombstone_keys: set[str] = set()
        """Keys whose every version is a tombstone: candidates for collection."""
        self.value_bytes = 0
        """Characters of keys and values held (all versions), kept as a running total."""

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def entry(self, key: str) -> Entry | None:
        stored = self._entries.get(key)
        return None if stored is None else _as_entry(stored)

    def winner(self, key: str) -> Version | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        return stored if type(stored) is Version else winner_of(stored)  # type: ignore[arg-type]

    def keys(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> Iterator[tuple[str, Entry]]:
        for key, stored in self._entries.items():
            yield key, (stored,) if type(stored) is Version else stored  # type: ignore[misc]

    def has_dot(self, key: str, writer: Writer, seq: int) -> bool:
        entry = self.entry(key)
        return entry is not None and any(v.writer == writer and v.seq == seq for v in entry)

    def versions_after(
        self, writer: Writer, after_seq: int, upto_seq: int
    ) -> Iterator[tuple[str, Version]]:
        """Live versions of ``writer`` with ``after_seq < seq <= upto_seq``, in sequence order."""
        log = self._logs.get(writer)
        if log is None:
            return
        start = bisect.bisect_right(log.seqs, after_seq)
        for slot in range(start, len(log.seqs)):
            seq = log.seqs[slot]
            if seq > upto_seq:
                break
            key = log.keys[slot]
            entry = self.entry(key)
            if entry is None:
                continue
            for version in entry:
                if version.writer == writer and version.seq == seq:
                    yield key, version
                    break

    def writers(self) -> Iterator[Writer]:
        return iter(self._logs)

    # -- writing -------------------------------------------------------------------------------

    def apply(self, key: str, version: Version) -> ApplyOutcome:
        """Merge a version into the key's sibling set."""
        if version.lamport > self.lamport:
            self.lamport = version.lamport
        entry = self.entry(key)
        if entry is None:
            self._entries[key] = version
            self.value_bytes += _size(key, version)
            self._log_add(version, key)
            if version.is_tombstone:
                self.tombstone_keys.add(key)
            else:
                self.live_keys += 1
            return ApplyOutcome(changed=True, obsolete=False)
        kept: list[Version] = []
        superseded: list[Version] = []
        for existing in entry:
            if existing.writer == version.writer and existing.seq == version.seq:
                return ApplyOutcome(changed=False, obsolete=True)
            if version.precedes(existing):
                return ApplyOutcome(changed=False, obsolete=True)
            if existing.precedes(version):
                superseded.append(existing)
            else:
                kept.append(existing)
        was_live = not winner_of(entry).is_tombstone
        kept.append(version)
        new_entry = tuple(kept)
        self._entries[key] = _stored(new_entry)
        self.value_bytes += _size(key, version) - sum(_size(key, old) for old in superseded)
        self._log_add(version, key)
        for old in superseded:
            self._log_remove(old)
        self.live_keys += int(not winner_of(new_entry).is_tombstone) - int(was_live)
        self._track_tombstones(key, new_entry)
        return ApplyOutcome(changed=True, obsolete=False)

    def remove(self, key: str) -> Entry | None:
        """Forget a key entirely (tombstone collection, or a key that moved away)."""
        stored = self._entries.pop(key, None)
        entry = None if stored is None else _as_entry(stored)
        if entry is not None:
            for version in entry:
                self.value_bytes -= _size(key, version)
                self._log_remove(version)
            if not winner_of(entry).is_tombstone:
                self.live_keys -= 1
            self.tombstone_keys.discard(key)
        return entry

    def discard_versions(self, key: str, doomed: list[Version]) -> None:
        """Drop some of a key's versions (ones found stale after a hand-off); the
        key goes away if none is left."""
        entry = self.entry(key)
        if entry is None or not doomed:
            return
        kept = tuple(v for v in entry if v not in doomed)
        if not kept:
            self.remove(key)
            return
        was_live = not winner_of(entry).is_tombstone
        self._entries[key] = _stored(kept)
        for version in doomed:
            self.value_bytes -= _size(key, version)
            self._log_remove(version)
        self.live_keys += int(not winner_of(kept).is_tombstone) - int(was_live)
        self._track_tombstones(key, kept)

    def clear(self) -> None:
        """Forget everything (a node that reset or left the cluster)."""
        self._entries.clear()
        self._logs.clear()
        self.live_keys = 0
        self.value_bytes = 0
        self.tombstone_keys.clear()

    def restore(self, key: str, entry: Entry) -> None:
        """Load one key's versions from durable storage."""
        self.restore_many(((key, entry),))

    def restore_many(self, items: Iterable[tuple[str, Entry]]) -> None:
        """Load keys from durable storage at start-up, in any order.

        The hot loop of recovery: a million keys must load in seconds, so it is
        written flat, and writer logs are sorted once at the end instead of kept
        sorted on every insertion.
        """
        entries = self._entries
        pending: dict[Writer, list[tuple[int, str]]] = {}
        lamport = self.lamport
        live = 0
        size = 0
        tombstones = self.tombstone_keys
        for key, entry in items:
            if len(entry) == 1:
                version = entry[0]
                entries[key] = version
                size += len(key) + (0 if version.value is None else len(version.value))
                bucket = pending.get(version.writer)
                if bucket is None:
                    bucket = pending[version.writer] = []
                bucket.append((version.seq, key))
                if version.lamport > lamport:
                    lamport = version.lamport
                if version.value is None:
                    tombstones.add(key)
                else:
                    live += 1
                continue
            for version in entry:
                size += _size(key, version)
                bucket = pending.get(version.writer)
                if bucket is None:
                    bucket = pending[version.writer] = []
                bucket.append((version.seq, key))
                if version.lamport > lamport:
                    lamport = version.lamport
            entries[key] = entry
            if winner_of(entry).value is not None:
                live += 1
            self._track_tombstones(key, entry)
        self.lamport = lamport
        self.live_keys += live
        self.value_bytes += size
        for writer, bucket in pending.items():
            log = self._logs.get(writer)
            if log is None:
                log = self._logs[writer] = _WriterLog()
            bucket.extend(zip(log.seqs, log.keys, strict=True))
            bucket.sort()
            log.seqs = [seq for seq, _ in bucket]
            log.keys = [key for _, key in bucket]

    def _track_tombstones(self, key: str, entry: Entry) -> None:
        if any(version.is_tombstone for version in entry):
            self.tombstone_keys.add(key)
        else:
            self.tombstone_keys.discard(key)

    def observe_lamport(self, lamport: int) -> None:
        if lamport > self.lamport:
            self.lamport = lamport

    def _log_add(self, version: Version, key: str) -> None:
        log = self._logs.get(version.writer)
        if log is None:
            log = self._logs[version.writer] = _WriterLog()
        log.add(version.seq, key)

    def _log_remove(self, version: Version) -> None:
        log = self._logs.get(version.writer)
        if log is None:
            return
        log.dead += 1
        if log.dead > 64 and log.dead * 2 > len(log.seqs):
            self._compact(version.writer, log)

    def _compact(self, writer: Writer, log: _WriterLog) -> None:
        seqs: list[int] = []
        keys: list[str] = []
        for seq, key in zip(log.seqs, log.keys, strict=True):
            entry = self.entry(key)
            if entry is not None and any(v.writer == writer and v.seq == seq for v in entry):
                seqs.append(seq)
                keys.append(key)
        if seqs:
            log.seqs, log.keys, log.dead = seqs, keys, 0
        else:
            del self._logs[writer]


def _size(key: str, version: Version) -> int:
    return len(key) + (0 if version.value is None else len(version.value))


def clock_of_entry(entry: Entry) -> Clock:
    """The merged clock of every sibling of a key."""
    clock: Clock = {}
    for version in entry:
        for writer, seq in version.dep_items():
            if seq > clock.get(writer, 0):
                clock[writer] = seq
        if version.seq > clock.get(version.writer, 0):
            clock[version.writer] = version.seq
    return clock


def dots_of_entry(entry: Entry) -> ClockView:
    """Just the siblings' own dots."""
    clock: Clock = {}
    for version in entry:
        if version.seq > clock.get(version.writer, 0):
            clock[version.writer] = version.seq
    return clock
