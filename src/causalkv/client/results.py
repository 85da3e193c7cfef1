"""What client operations return, beyond plain strings and dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sibling:
    """One of several concurrent versions of a key (``?siblings=1``).

    The store resolves concurrent writes deterministically; siblings show the
    versions that lost (or a concurrent delete, with ``value`` ``None``).
    """

    value: str | None
    writer: str
    lamport: int


@dataclass(frozen=True, slots=True)
class Reading:
    """The result of `Client.fetch`: a value or its absence, and who served it."""

    key: str
    value: str | None
    node: str
    """Address of the replica that answered."""
    siblings: tuple[Sibling, ...] = ()

    @property
    def found(self) -> bool:
        """True if the key has a value."""
        return self.value is not None


@dataclass(frozen=True, slots=True)
class ShardListing:
    """The keys of one shard (``GET /data`` on one of its replicas)."""

    shard: str
    node: str
    """Address of the replica that answered."""
    items: dict[str, str]


@dataclass(frozen=True, slots=True)
class NodeProbe:
    """Health of one node: does it answer /ping, and its /status snapshot if it does."""

    address: str
    up: bool
    ping_ms: float | None = None
    status: dict[str, Any] | None = None
    error: str | None = None
