"""The causalkv client library: `Client` (blocking) and `AsyncClient` (asyncio).

Both drive one sans-I/O implementation of the protocol (`causalkv.client.engine`),
so they behave identically: they learn the view from seed nodes, send each
request straight to a replica of the key's shard, fail over to the next replica,
refresh the view when it looks stale, and carry a causal `Session` that makes
read-your-writes, monotonic reads and writes-follow-reads automatic.

    from causalkv import Client

    with Client("127.0.0.1:8081") as kv:
        kv["greeting"] = "hello"
        print(kv["greeting"])

See ``docs/tutorial.md``.
"""

from causalkv.client.async_client import AsyncClient
from causalkv.client.errors import (
    AttemptFailure,
    BadRequest,
    CausalKVError,
    DependencyTimeout,
    KeyNotFound,
    ProtocolError,
    Unauthorized,
    Unavailable,
    ViewConflict,
)
from causalkv.client.results import NodeProbe, Reading, ShardListing, Sibling
from causalkv.client.routing import parse_addresses
from causalkv.client.session import Session, SessionInput
from causalkv.client.settings import ClientSettings
from causalkv.client.sync_client import Client

__all__ = [
    "AsyncClient",
    "AttemptFailure",
    "BadRequest",
    "CausalKVError",
    "Client",
    "ClientSettings",
    "DependencyTimeout",
    "KeyNotFound",
    "NodeProbe",
    "ProtocolError",
    "Reading",
    "Session",
    "SessionInput",
    "ShardListing",
    "Sibling",
    "Unauthorized",
    "Unavailable",
    "ViewConflict",
    "parse_addresses",
]
