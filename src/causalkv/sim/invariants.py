"""Invariants the simulator asserts besides what the history checker judges.

* **Dots are never reissued.** A dot ``(writer, seq)`` names one version:
  once a version has left its node (it became durable, or a peer received it)
  no other version may carry the same dot. A node that crashes and restarts
  reissuing a sequence number it had already revealed breaks this.
* **Clocks claim nothing that was not issued.** After convergence no
  replica's ``known[W]`` exceeds the highest sequence number writer ``W``
  ever issued.
* **Clients only see results the API can return** (never ``FORWARD`` or
  ``WRONG_SHARD`` for a request that was not forwarded, never ``BAD_REQUEST``
  for a well-formed request).

A violation halts the run at once, so the trace ends where it happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from causalkv.core.clock import Clock
from causalkv.core.effects import PersistBatch
from causalkv.core.messages import Envelope, Push, SyncDelta, TransferChunk, WireVersion
from causalkv.core.writer import Writer, describe_writer, intern_writer


class Invariants:
    def __init__(self, halt: Callable[[str], None]) -> None:
        self._halt = halt
        self._dots: dict[tuple[Writer, int], tuple[str, str | None, int]] = {}
        self._first_seen: dict[tuple[Writer, int], str] = {}
        self.highest_seq: dict[Writer, int] = {}
        self.violations: list[str] = []

    def violated(self, message: str) -> None:
        self.violations.append(message)
        self._halt(f"invariant violated: {message}")

    # -- dots --------------------------------------------------------------------------------------

    def _register(
        self, where: str, key: str, writer: Writer, seq: int, lamport: int, value: str | None
    ) -> None:
        dot = (writer, seq)
        identity = (key, value, lamport)
        seen = self._dots.get(dot)
        if seen is None:
            self._dots[dot] = identity
            self._first_seen[dot] = where
            if seq > self.highest_seq.get(writer, 0):
                self.highest_seq[writer] = seq
        elif seen != identity:
            self.violated(
                f"dot {describe_writer(writer)}:{seq} reissued: first {seen[0]}={seen[1]!r}"
                f" lamport {seen[2]} ({self._first_seen[dot]}), now {key}={value!r}"
                f" lamport {lamport} ({where})"
            )

    def durable(self, address: str, batches: Iterable[PersistBatch]) -> None:
        """Versions in batches that became durable on ``address``."""
        for batch in batches:
            for key, entry in batch.keys.items():
                if entry is None:
                    continue
                for version in entry:
                    self._register(
                        f"durable on {address}",
                        key,
                        version.writer,
                        version.seq,
                        version.lamport,
                        version.value,
                    )

    def received(self, envelope: Envelope) -> None:
        """Versions carried by messages a node received."""
        for message in envelope.messages:
            if isinstance(message, Push | SyncDelta | TransferChunk):
                where = f"{type(message).__name__} from {envelope.sender} to {envelope.destination}"
                self._wire_versions(where, message.versions)

    def _wire_versions(self, where: str, versions: list[WireVersion]) -> None:
        for wire in versions:
            if len(wire.writer) != 14:
                continue  # malformed; the core rejects it
            self._register(
                where, wire.key, intern_writer(wire.writer), wire.seq, wire.lamport, wire.value
            )

    # -- clocks ------------------------------------------------------------------------------------

    def check_known(self, address: str, known: Clock) -> None:
        for writer, seq in sorted(known.items()):
            issued = self.highest_seq.get(writer, 0)
            if seq > issued:
                self.violated(
                    f"{address} claims {describe_writer(writer)} up to {seq}, but that writer"
                    f" issued only {issued}"
                )
                return
