"""Client settings: timeouts, retry budget, pooling and view refresh, in one validated place."""

from __future__ import annotations

from dataclasses import dataclass, fields

# The server's causal wait bound is 20 s (SPEC §3); a data request must be allowed
# to outlive it, or the client would time out on requests the server still answers.
DATA_TIMEOUT_S_DEFAULT = 30.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a `Client` or `AsyncClient` talks to the cluster.

    Times are in seconds. Every retry loop and pool is bounded by one of these.
    """

    timeout_s: float = DATA_TIMEOUT_S_DEFAULT
    """Longest wait for one data request's answer (covers the server's 20 s causal wait)."""
    connect_timeout_s: float = 2.0
    """Longest wait to open a connection; a node that does not accept in time is skipped."""
    probe_timeout_s: float = 2.0
    """Timeout of /ping, /view and /status requests."""
    view_change_timeout_s: float = 600.0
    """Timeout of ``PUT /view``, which answers only once the keys have moved."""
    retries: int = 4
    """Attempts after the first, each on the next replica of the shard."""
    resend_ambiguous_writes: bool = False
    """Send a write again after an attempt that may have reached a node (a
    timeout after sending, a dropped connection, a 5xx). Off by default: a
    resent write that was applied the first time is applied twice, and the
    second copy can land after writes that depended on the first (the
    server never resends a forwarded write either). Off, such a write raises
    `Unavailable` with ``maybe_applied=True`` at once."""
    backoff_s: float = 0.05
    """Pause after every replica of a shard failed once; doubles each round."""
    backoff_max_s: float = 1.0
    """Upper bound of that pause (and of an honoured ``Retry-After``)."""
    node_down_s: float = 5.0
    """How long a node that failed is tried only after the others."""
    view_refresh_interval_s: float = 60.0
    """Re-read the view at most this long after the last time (0: before every request)."""
    view_probe_nodes_max: int = 8
    """Nodes asked for the view in one refresh before giving up."""
    connections_max: int = 64
    """Open connections in the pool, over all nodes."""
    keepalive_connections_max: int = 32
    """Idle connections kept alive for reuse."""
    keepalive_expiry_s: float = 4.0
    """Idle connections are dropped after this long: before the nodes' own keep-alive
    timeout (5 s), so that a request is not sent on a connection the node is closing."""
    client_token: str | None = None
    """Bearer token sent with data requests (if the nodes require one)."""
    cluster_secret: str | None = None
    """Bearer token sent with admin requests (``PUT /view``) when the cluster has a secret."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"client setting {field.name} must not be negative, got {value}")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0 or self.probe_timeout_s <= 0:
            raise ValueError("client timeouts must be positive")
        if self.retries > 100:
            raise ValueError("client setting retries must be at most 100")
        if self.view_probe_nodes_max < 1 or self.connections_max < 1:
            raise ValueError("view_probe_nodes_max and connections_max must be at least 1")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("backoff_max_s must be at least backoff_s")
