"""causalkv: a sharded, replicated, causally consistent key-value store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The client library is re-exported lazily, so that importing `causalkv` (the node, the CLI)
# does not import the HTTP client stack.
_CLIENT_EXPORTS = frozenset(
    {
        "AsyncClient",
        "BadRequest",
        "CausalKVError",
        "Client",
        "ClientSettings",
        "DependencyTimeout",
        "KeyNotFound",
        "ProtocolError",
        "Session",
        "Unauthorized",
        "Unavailable",
        "ViewConflict",
    }
)

if TYPE_CHECKING:
    from causalkv.client import (
        AsyncClient,
        BadRequest,
        CausalKVError,
        Client,
        ClientSettings,
        DependencyTimeout,
        KeyNotFound,
        ProtocolError,
        Session,
        Unauthorized,
        Unavailable,
        ViewConflict,
    )


def __getattr__(name: str) -> Any:
    if name in _CLIENT_EXPORTS:
        from causalkv import client

        return getattr(client, name)
    raise AttributeError(f"module 'causalkv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_CLIENT_EXPORTS])


__all__ = [
    "AsyncClient",
    "BadRequest",
    "CausalKVError",
    "Client",
    "ClientSettings",
    "DependencyTimeout",
    "KeyNotFound",
    "ProtocolError",
    "Session",
    "Unauthorized",
    "Unavailable",
    "ViewConflict",
    "__version__",
]
