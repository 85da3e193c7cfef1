"""The simulated disk of one node: what survives a crash.

It mirrors ``causalkv.runtime.storage.SqliteStorage``: batches are queued; a
writer takes every batch queued so far and commits them as one transaction
(*group commit*), which becomes durable after a simulated fsync delay; then
the node is told the highest durable persist id. A commit is atomic. Entries
and metadata are encoded with the real storage encoding when the commit
starts (so a later mutation of an object the core handed over cannot leak
into what was "written"), and decoded again on restart.

On a crash, queued batches are lost; the commit in flight is either lost or
durable (the crash came just before or just after the fsync returned; the
node never learns which). A graceful stop commits everything first, as
``SqliteStorage.close`` does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec

from causalkv.core.effects import DurableMeta, PersistBatch
from causalkv.core.keystore import Entry
from causalkv.runtime.storage import decode_entry, encode_entry
from causalkv.sim.loop import EventLoop, Timer

_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(DurableMeta)


@dataclass
class DiskProfile:
    """fsync latency of one run (drawn per seed)."""

    fsync_min_s: float = 0.0002
    fsync_max_s: float = 0.004
    slow_probability: float = 0.0
    slow_max_s: float = 0.0
    crash_keeps_commit_probability: float = 0.5

    def describe(self) -> str:
        text = f"fsync {self.fsync_min_s * 1e3:.1f}-{self.fsync_max_s * 1e3:.1f}ms"
        if self.slow_probability:
            text += f" slow {self.slow_probability:.0%}<{self.slow_max_s * 1e3:.0f}ms"
        return text


@dataclass
class _Commit:
    persist_id: int
    keys: dict[str, bytes | None]
    reset: bool
    meta: bytes
    timer: Timer
    batches: list[PersistBatch]


class SimDisk:
    def __init__(self, loop: EventLoop, rng: random.Random, profile: DiskProfile) -> None:
        self.loop = loop
        self.rng = rng
        self.profile = profile
        self._meta: bytes | None = None
        self._entries: dict[str, bytes] = {}
        self._queue: list[PersistBatch] = []
        self._commit: _Commit | None = None
        self._on_durable: Callable[[int], None] | None = None
        self.on_commit_durable: Callable[[list[PersistBatch]], None] | None = None
        """Told of the batches of every commit that became durable (for invariants)."""
        self.commits = 0
        self.batches = 0

    # -- the node's side -------------------------------------------------------------------------

    def attach(self, on_durable: Callable[[int], None]) -> None:
        """A (re)started node takes over the disk."""
        self._on_durable = on_durable

    def load(self) -> tuple[DurableMeta | None, Iterator[tuple[str, Entry]]]:
        if self._meta is None:
            return None, iter(())
        meta = _meta_decoder.decode(self._meta)
        entries = [(key, decode_entry(data)) for key, data in self._entries.items()]
        return meta, iter(entries)

    def submit(self, batch: PersistBatch) -> None:
        self.batches += 1
        self._queue.append(batch)
        if self._commit is None:
            self._start_commit()

    def busy(self) -> bool:
        return self._commit is not None or bool(self._queue)

    # -- commits ---------------------------------------------------------------------------------

    def _fsync_delay(self) -> float:
        profile = self.profile
        rng = self.rng
        delay = profile.fsync_min_s + (profile.fsync_max_s - profile.fsync_min_s) * rng.random()
        if profile.slow_probability and rng.random() < profile.slow_probability:
            delay += profile.slow_max_s * rng.random()
        return delay

    def _start_commit(self) -> None:
        batches = self._queue[:10_000]
        del self._queue[: len(batches)]
        keys: dict[str, bytes | None] = {}
        reset = False
        for batch in batches:
            if batch.reset:
                reset = True
                keys.clear()
            for key, entry in batch.keys.items():
                keys[key] = None if entry is None else encode_entry(entry)
        meta = _meta_encoder.encode(batches[-1].meta)
        timer = self.loop.call_later(self._fsync_delay(), self._finish_commit)
        self._commit = _Commit(batches[-1].persist_id, keys, reset, meta, timer, batches)

    def _apply(self, commit: _Commit) -> None:
        if commit.reset:
            self._entries.clear()
        for key, data in commit.keys.items():
            if data is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = data
        self._meta = commit.meta
        self.commits += 1
        if self.on_commit_durable is not None:
            self.on_commit_durable(commit.batches)

    def _finish_commit(self) -> None:
        commit = self._commit
        assert commit is not None
        self._commit = None
        self._apply(commit)
        if self._on_durable is not None:
            self._on_durable(commit.persist_id)
        if self._queue and self._commit is None:
            self._start_commit()

    # -- failures --------------------------------------------------------------------------------

    def crash(self) -> str:
        """Power loss: queued batches vanish; the commit in flight may or may not survive."""
        self._on_durable = None
        lost = len(self._queue)
        self._queue.clear()
        outcome = "nothing pending"
        commit = self._commit
        if commit is not None:
            commit.timer.cancel()
            self._commit = None
            if self.rng.random() < self.profile.crash_keeps_commit_probability:
                self._apply(commit)
                outcome = f"commit up to {commit.persist_id} survived"
            else:
                outcome = f"commit up to {commit.persist_id} lost"
        if lost:
            outcome += f", {lost} queued batches lost"
        return outcome

    def flush(self) -> None:
        """Graceful stop: commit everything queued, at once."""
        self._on_durable = None
        while self._commit is not None or self._queue:
            if self._commit is None:
                self._start_commit()
            commit = self._commit
            assert commit is not None
            commit.timer.cancel()
            self._commit = None
            self._apply(commit)

    # -- inspection ------------------------------------------------------------------------------

    def durable_keys(self) -> list[str]:
        return list(self._entries)
