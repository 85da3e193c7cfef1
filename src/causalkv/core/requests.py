"""Client operations as the core sees them, and their dialect-neutral results.

The HTTP layer parses a request of either dialect into a ``ClientRequest`` and
renders the ``OperationResult`` back in that dialect's words and status codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from causalkv.core.token import Token


class Operation(enum.Enum):
    GET = "get"
    PUT = "put"
    DELETE = "delete"
    LIST = "list"

    @property
    def is_write(self) -> bool:
        """Writes are not idempotent: one that may have been applied is never
        sent again (see ``ResultKind.OUTCOME_UNKNOWN``)."""
        return self is Operation.PUT or self is Operation.DELETE


DEPENDENCY_TIMEOUT_TEXT = "timed out while waiting for depended updates"
"""The error both HTTP dialects answer a causal-wait timeout with (SPEC)."""
OUTCOME_UNKNOWN_TEXT = (
    "the replica this write was forwarded to did not answer; it may or may not have been applied"
)
"""The error both HTTP dialects answer ``ResultKind.OUTCOME_UNKNOWN`` with."""


class ResultKind(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not-found"
    FORWARD = "forward"
    """The key belongs to another shard; ``forward_to`` lists its replicas."""
    NO_VIEW = "no-view"
    NOT_MEMBER = "not-member"
    DEPENDENCY_TIMEOUT = "dependency-timeout"
    OVERLOADED = "overloaded"
    WRONG_SHARD = "wrong-shard"
    """A forwarded request reached a node that does not own the key (views differ)."""
    VIEW_CONFLICT = "view-conflict"
    """A concurrent view change with a different view won."""
    VIEW_CHANGE_TIMEOUT = "view-change-timeout"
    """The view change could not complete in time (it goes on in the background)."""
    BAD_REQUEST = "bad-request"
    OUTCOME_UNKNOWN = "outcome-unknown"
    """A forwarded write reached a replica that did not answer: it may or may not
    have been applied. Sending it again elsewhere could apply it twice, the
    second time after later writes that depend on it (see ``runtime/node.py``)."""


@dataclass(slots=True)
class ClientRequest:
    request_id: int
    operation: Operation
    key: str | None
    token: Token
    value: str | None = None
    forwarded: bool = False
    """Already forwarded once: never forward again (answer WRONG_SHARD instead)."""
    with_siblings: bool = False


@dataclass(slots=True)
class Sibling:
    value: str | None
    writer: str
    lamport: int


@dataclass(slots=True)
class OperationResult:
    kind: ResultKind
    token: Token | None = None
    value: str | None = None
    items: dict[str, str] | None = None
    created: bool = False
    """A PUT whose causal past held no live value of the key (SyncKV's 201)."""
    forward_to: tuple[str, ...] = ()
    siblings: list[Sibling] = field(default_factory=list)
    detail: str = ""
