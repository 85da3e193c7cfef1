"""The event trace of a run: a digest of everything that happened, the recent
lines (shown when a seed fails), and, in verbose mode, every line as it happens.

Two runs of the same seed must produce the same digest: the determinism test
compares them. Lines carry the virtual time and the node concerned.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable

from causalkv.sim.loop import EventLoop


class Trace:
    def __init__(
        self,
        loop: EventLoop,
        echo: Callable[[str], None] | None = None,
        keep_lines: int = 400,
    ) -> None:
        self._loop = loop
        self._echo = echo
        self._digest = hashlib.blake2b(digest_size=16)
        self.recent: deque[str] = deque(maxlen=keep_lines)
        self.line_count = 0

    @property
    def verbose(self) -> bool:
        return self._echo is not None

    def record(self, where: str, what: str) -> None:
        line = f"{self._loop.now:11.6f} {where:<8} {what}"
        self._digest.update(line.encode("utf-8", "backslashreplace"))
        self._digest.update(b"\n")
        self.line_count += 1
        self.recent.append(line)
        if self._echo is not None:
            self._echo(line)

    def absorb(self, data: bytes) -> None:
        """Feed the digest with data that is not worth a trace line."""
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.copy().hexdigest()

    def tail(self, count: int = 60) -> list[str]:
        lines = list(self.recent)
        return lines[-count:]
