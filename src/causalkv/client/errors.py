"""The client's exceptions: one base class, one subclass per thing a caller can act on.

Every exception carries ``maybe_applied``: whether a write that failed might
nevertheless have taken effect (an attempt timed out or lost its connection
after the request was sent). Histories record such operations as ``info``
(outcome unknown), never as ``fail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One failed attempt of an operation: where it went and why it failed."""

    address: str
    reason: str

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


class CausalKVError(Exception):
    """Base class of every error the causalkv client raises.

    ``maybe_applied`` is true if a write may have taken effect although the call failed.
    """

    def __init__(self, *args: object, maybe_applied: bool = False) -> None:
        super().__init__(*args)
        self.maybe_applied = maybe_applied


class KeyNotFound(CausalKVError, KeyError):
    """The key has no value (never written, or deleted) in the session's causal past."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"key not found: {self.key!r}"


class DependencyTimeout(CausalKVError):
    """The replicas could not catch up with what this session has seen in time.

    The node waited (20 s by default) for updates the session depends on and
    gave up; retry later, when the partition or failure that held them back heals.
    """


class Unavailable(CausalKVError):
    """No replica able to serve the request answered within the retry budget."""

    def __init__(
        self, message: str, attempts: Sequence[AttemptFailure] = (), *, maybe_applied: bool = False
    ) -> None:
        self.attempts = tuple(attempts)
        detail = "; ".join(str(attempt) for attempt in self.attempts[-6:])
        super().__init__(
            f"{message} ({detail})" if detail else message, maybe_applied=maybe_applied
        )


class BadRequest(CausalKVError, ValueError):
    """The request is malformed: an empty or too long key, a too large value,
    a malformed view or session. Retrying the same request cannot help."""


class Unauthorized(CausalKVError):
    """The node wants a (different) bearer token: see ``client_token`` and ``cluster_secret``."""


class ViewConflict(CausalKVError):
    """``PUT /view`` lost to a concurrent, different view change (HTTP 409)."""

    def __init__(self, message: str, installed_view: object = None) -> None:
        super().__init__(message)
        self.installed_view = installed_view


class ProtocolError(CausalKVError):
    """A node answered something this client does not understand."""
