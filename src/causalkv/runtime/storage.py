"""Durable storage of a node's versions and metadata.

The core emits ``PersistBatch`` objects; storage makes them durable and then
reports the highest durable batch id back to the event loop. Two engines:

* ``SqliteStorage`` (the default): SQLite in WAL mode with ``synchronous=FULL``
  (every commit is fsynced). One writer thread takes every batch queued since
  its last commit and writes them in one transaction (*group commit*), so
  throughput follows the number of writes per fsync, not the fsync rate. SQLite
  ships with Python: nothing to install, a single file, decades of crash-safety
  testing. Why SQLite and not LMDB/RocksDB/LevelDB is in ``docs/storage.md``.
* ``MemoryStorage``: keeps nothing; for tests and throwaway clusters.

A data directory remembers its format version, cluster name and node id; a
directory written by another cluster or node, or by an incompatible version,
is refused with a clear message rather than silently mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from causalkv.core.effects import DurableMeta, PersistBatch
from causalkv.core.keystore import Entry, Version
from causalkv.core.writer import _interned as _interned_writers
from causalkv.core.writer import intern_writer

STORAGE_FORMAT_VERSION = 2
_EncodedVersion = tuple[bytes, int, int, bytes, str | None]
_entry_decoder = msgspec.msgpack.Decoder(list[_EncodedVersion])
_meta_decoder = msgspec.msgpack.Decoder(DurableMeta)
_encoder = msgspec.msgpack.Encoder()

DurableCallback = Callable[[int], None]


class StorageError(RuntimeError):
    """The data directory cannot be used; the message says why."""


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode([(v.writer, v.seq, v.lamport, v.deps, v.value) for v in entry])


def decode_entry(data: bytes) -> Entry:
    """Versions are stored with their dependencies already packed (``Version.deps``)."""
    return tuple(
        Version(_interned_writers.get(writer) or intern_writer(writer), seq, lamport, deps, value)
        for writer, seq, lamport, deps, value in _entry_decoder.decode(data)
    )


@dataclass(slots=True)
class StorageStats:
    commits: int = 0
    batches: int = 0
    keys_written: int = 0
    commit_seconds_total: float = 0.0
    last_commit_seconds: float = 0.0
    last_batch_count: int = 0


class Storage(Protocol):
    stats: StorageStats

    def load(self) -> tuple[DurableMeta | None, Iterator[tuple[str, Entry]]]: ...

    def start(self, loop: asyncio.AbstractEventLoop, on_durable: DurableCallback) -> None: ...

    def submit(self, batch: PersistBatch) -> None: ...

    def close(self) -> None: ...


class MemoryStorage:
    """Keeps nothing: every batch is "durable" at once."""

    def __init__(self) -> None:
        self.stats = StorageStats()
        self._on_durable: DurableCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self) -> tuple[DurableMeta | None, Iterator[tuple[str, Entry]]]:
        return None, iter(())

    def start(self, loop: asyncio.AbstractEventLoop, on_durable: DurableCallback) -> None:
        self._loop = loop
        self._on_durable = on_durable

    def submit(self, batch: PersistBatch) -> None:
        self.stats.batches += 1
        assert self._loop is not None and self._on_durable is not None
        self._loop.call_soon(self._on_durable, batch.persist_id)

    def close(self) -> None:
        pass


class SqliteStorage:
    """SQLite-backed durable storage with a group-committing writer thread."""

    def __init__(self, data_dir: Path, cluster_name: str, node_id: str, fsync: bool = True) -> None:
        self.stats = StorageStats()
        self.data_dir = data_dir
        self._fsync = fsync
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create data directory {data_dir}: {error}") from error
        path = data_dir / "causalkv.sqlite3"
        try:
            self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, versions BLOB NOT NULL)"
                " WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{path} is not a usable causalkv database: {error}") from error
        self._check_identity(cluster_name, node_id)
        self._queue: queue.SimpleQueue[PersistBatch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_durable: DurableCallback | None = None
        self.failure: BaseException | None = None

    def _check_identity(self, cluster_name: str, node_id: str) -> None:
        rows = dict(self._connection.execute("SELECT name, value FROM meta").fetchall())
        expected = {
            "format": str(STORAGE_FORMAT_VERSION).encode(),
            "cluster": cluster_name.encode(),
            "node": node_id.encode(),
        }
        if "format" not in rows:
            with self._connection:
                self._connection.execute("BEGIN")
                self._connection.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", expected.items()
                )
            return
        found_format = bytes(rows["format"]).decode(errors="replace")
        if found_format != expected["format"].decode():
            raise StorageError(
                f"data directory {self.data_dir} has storage format {found_format}; this version"
                f" of causalkv reads format {STORAGE_FORMAT_VERSION}"
            )
        found_cluster = bytes(rows.get("cluster", b"")).decode(errors="replace")
        if found_cluster != cluster_name:
            raise StorageError(
                f"data directory {self.data_dir} belongs to cluster {found_cluster!r}, not"
                f" {cluster_name!r}; refusing to mix data (use another --data-dir)"
            )
        found_node = bytes(rows.get("node", b"")).decode(errors="replace")
        if found_node != node_id:
            raise StorageError(
                f"data directory {self.data_dir} belongs to node {found_node!r}, not"
                f" {node_id!r}; refusing to mix data (use another --data-dir)"
            )

    def load(self) -> tuple[DurableMeta | None, Iterator[tuple[str, Entry]]]:
        row = self._connection.execute("SELECT value FROM meta WHERE name = 'state'").fetchone()
        if row is None:
            return None, iter(())
        try:
            meta = _meta_decoder.decode(row[0])
        except msgspec.DecodeError as error:
            raise StorageError(f"node state in {self.data_dir} is corrupt: {error}") from error

        def entries() -> Iterator[tuple[str, Entry]]:
            cursor = self._connection.execute("SELECT key, versions FROM entries")
            while True:
                rows = cursor.fetchmany(10_000)
                if not rows:
                    return
                for key, versions in rows:
                    yield key, decode_entry(versions)

        return meta, entries()

    def start(self, loop: asyncio.AbstractEventLoop, on_durable: DurableCallback) -> None:
        self._loop = loop
        self._on_durable = on_durable
        self._thread = threading.Thread(target=self._run, name="causalkv-storage", daemon=True)
        self._thread.start()

    def submit(self, batch: PersistBatch) -> None:
        if self.failure is not None:
            raise StorageError(f"storage failed earlier: {self.failure}")
        self._queue.put(batch)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batches = [first]
            stop = False
            while len(batches) < 10_000:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batches.append(more)
            try:
                self.write(batches)
                self._notify(batches[-1].persist_id)
            except BaseException as error:  # the node must stop acknowledging writes
                self.failure = error
                raise
            if stop:
                return

    def write(self, batches: list[PersistBatch]) -> None:
        """Write batches in one transaction (blocking; the writer thread's job)."""
        started = time.perf_counter()
        keys: dict[str, object] = {}
        clear = False
        for batch in batches:
            if batch.reset:
                clear = True
                keys.clear()
            keys.update(batch.keys)
        meta = batches[-1].meta
        upserts = [(k, encode_entry(e)) for k, e in keys.items() if e is not None]  # type: ignore[arg-type]
        deletes = [(k,) for k, e in keys.items() if e is None]
        connection = self._connection
        connection.execute("BEGIN")
        try:
            if clear:
                connection.execute("DELETE FROM entries")
            if upserts:
                connection.executemany(
                    "INSERT OR REPLACE INTO entries (key, versions) VALUES (?, ?)", upserts
                )
            if deletes:
                connection.executemany("DELETE FROM entries WHERE key = ?", deletes)
            connection.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('state', ?)",
                (_encoder.encode(meta),),
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.commits += 1
        stats.batches += len(batches)
        stats.keys_written += len(keys)
        stats.commit_seconds_total += elapsed
        stats.last_commit_seconds = elapsed
        stats.last_batch_count = len(batches)

    def _notify(self, persist_id: int) -> None:
        assert self._loop is not None and self._on_durable is not None
        # RuntimeError: the loop closed during shutdown; the data is durable anyway.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_durable, persist_id)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self._connection.close()


def open_storage(
    engine: str, data_dir: Path | None, cluster_name: str, node_id: str, fsync: bool = True
) -> Storage:
    if engine == "memory" or data_dir is None:
        return MemoryStorage()
    return SqliteStorage(data_dir, cluster_name, node_id, fsync=fsync)
