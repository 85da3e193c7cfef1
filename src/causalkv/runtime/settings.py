"""Node settings from flags and environment variables (SPEC §2).

Every setting has a flag and an environment variable; flags win. The
container-style variables of both seeds are understood: ``NODE_IDENTIFIER``
(sharded dialect), ``ADDRESS`` and ``NODE_ID`` (SyncKV dialect), ``PORT``.
A malformed setting raises ``SettingsError`` with a one-line message naming
it; ``causalkv serve`` prints it and exits with status 1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from causalkv.core.base import ReplicaSettings

DEFAULT_PORT = 8081
SYNCKV_DEFAULT_PORT = 8080
STORAGE_ENGINES = ("sqlite", "memory")
MODES = ("auto", "synckv")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class NodeSettings:
    listen_host: str
    listen_port: int
    node_id: str
    advertise_address: str | None
    """This node's address as peers and views know it, when configured."""
    data_dir: Path | None
    """None with the memory engine."""
    storage: str = "sqlite"
    cluster_name: str = "causalkv"
    cluster_secret: str | None = None
    client_token: str | None = None
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    """CA bundle that peers' certificates are verified against (default: system CAs)."""
    unsafe_async_commit: bool = False
    test_hooks: bool = False
    """Serve ``/debug/*`` fault hooks (hold back replication). Tests only."""
    log_level: str = "info"
    tick_interval_s: float = 0.02
    request_body_bytes_max: int = 17 * 1024 * 1024
    peer_body_bytes_max: int = 64 * 1024 * 1024
    peer_messages_per_envelope_max: int = 100_000
    concurrent_requests_max: int = 1024
    peer_connect_timeout_s: float = 0.5
    peer_send_timeout_s: float = 1.0
    replica: ReplicaSettings = field(default_factory=ReplicaSettings)

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None

    def validate(self) -> None:
        """One place that checks every limit (SettingsError names the offender)."""
        limits = {
            "CAUSALKV_REQUEST_BODY_BYTES_MAX": (self.request_body_bytes_max, 1024, 2**31),
            "CAUSALKV_CONCURRENT_REQUESTS_MAX": (self.concurrent_requests_max, 1, 1_000_000),
            "CAUSALKV_WAITING_REQUESTS_MAX": (self.replica.waiting_requests_max, 1, 10_000_000),
            "peer body limit": (self.peer_body_bytes_max, 1024, 2**31),
        }
        for name, (value, low, high) in limits.items():
            if not low <= value <= high:
                raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise SettingsError(
                "CAUSALKV_TLS_CERTIFICATE and CAUSALKV_TLS_KEY must be set together"
            )
        for name, path in (
            ("CAUSALKV_TLS_CERTIFICATE", self.tls_certificate),
            ("CAUSALKV_TLS_KEY", self.tls_key),
            ("CAUSALKV_TLS_CA", self.tls_ca),
        ):
            if path is not None and not path.is_file():
                raise SettingsError(f"{name} is not a readable file: {path}")
        try:
            self.replica.validate()
        except ValueError as error:
            raise SettingsError(str(error)) from error


def parse_host_port(value: str, setting: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets); raises SettingsError naming ``setting``."""
    text = value.strip()
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]*):(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise SettingsError(
            f"{setting} must be host:port (for example 10.0.0.2:8080), got {value!r}"
        )
    host = match.group(1).strip("[]") or "0.0.0.0"
    return host, int(match.group(2))


def _first(sources: list[tuple[str, str | None]]) -> tuple[str, str] | None:
    for name, value in sources:
        if value is not None and value != "":
            return name, value
    return None


def _float(name: str, value: str | float) -> float:
    try:
        number = float(value)
    except ValueError as error:
        raise SettingsError(f"{name} must be a number, got {value!r}") from error
    if not number > 0:
        raise SettingsError(f"{name} must be positive, got {value!r}")
    return number


def _int(name: str, value: object) -> int:
    try:
        return int(str(value))
    except ValueError as error:
        raise SettingsError(f"{name} must be an integer, got {value!r}") from error


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(
    flags: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> NodeSettings:
    """Resolve settings from flags (None = not given) and the environment."""
    env = dict(os.environ if environ is None else environ)

    def flag(name: str) -> str | None:
        value = flags.get(name)
        return None if value is None else str(value)

    mode = (flag("mode") or env.get("CAUSALKV_MODE") or "auto").lower()
    if mode not in MODES:
        raise SettingsError(f"CAUSALKV_MODE must be one of {', '.join(MODES)}, got {mode!r}")

    advertise = _first(
        [
            ("--advertise", flag("advertise")),
            ("CAUSALKV_ADVERTISE", env.get("CAUSALKV_ADVERTISE")),
            ("ADDRESS", env.get("ADDRESS")),
        ]
    )
    advertise_address = None
    if advertise is not None:
        parse_host_port(advertise[1], advertise[0])
        advertise_address = advertise[1].strip()
    elif mode == "synckv":
        raise SettingsError("ADDRESS must be set to this node's host:port in SyncKV mode")

    synckv_style = bool(env.get("NODE_ID") or env.get("ADDRESS"))
    listen = _first([("--listen", flag("listen")), ("CAUSALKV_LISTEN", env.get("CAUSALKV_LISTEN"))])
    if listen is not None:
        listen_host, listen_port = parse_host_port(listen[1], listen[0])
    elif env.get("ADDRESS"):
        _, listen_port = parse_host_port(env["ADDRESS"], "ADDRESS")
        listen_host = "0.0.0.0"
    elif env.get("PORT"):
        port_text = env["PORT"].strip()
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SettingsError(f"PORT must be a port number, got {env['PORT']!r}")
        listen_host, listen_port = "0.0.0.0", int(port_text)
    else:
        listen_host = "0.0.0.0"
        listen_port = SYNCKV_DEFAULT_PORT if synckv_style else DEFAULT_PORT

    node = _first(
        [
            ("--node-id", flag("node_id")),
            ("CAUSALKV_NODE_ID", env.get("CAUSALKV_NODE_ID")),
            ("NODE_IDENTIFIER", env.get("NODE_IDENTIFIER")),
            ("NODE_ID", env.get("NODE_ID")),
        ]
    )
    if node is not None:
        node_id = node[1].strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", node_id):
            raise SettingsError(
                f"{node[0]} must be 1-64 letters, digits, '.', '_' or '-', got {node[1]!r}"
            )
    else:
        node_id = (advertise_address or f"{listen_host}:{listen_port}").replace(":", "-")

    storage = (flag("storage") or env.get("CAUSALKV_STORAGE") or "sqlite").lower()
    if storage not in STORAGE_ENGINES:
        raise SettingsError(
            f"CAUSALKV_STORAGE must be one of {', '.join(STORAGE_ENGINES)}, got {storage!r}"
        )
    data_dir: Path | None = None
    if storage != "memory":
        configured = flag("data_dir") or env.get("CAUSALKV_DATA_DIR")
        data_dir = Path(configured) if configured else Path("causalkv-data") / node_id

    secret = flag("cluster_secret") or env.get("CAUSALKV_CLUSTER_SECRET") or None
    secret_file = flag("cluster_secret_file") or env.get("CAUSALKV_CLUSTER_SECRET_FILE")
    if secret is None and secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as error:
            raise SettingsError(f"CAUSALKV_CLUSTER_SECRET_FILE cannot be read: {error}") from error
    if secret is not None and len(secret) < 8:
        raise SettingsError("CAUSALKV_CLUSTER_SECRET must be at least 8 characters")

    causal_wait = flags.get("causal_wait_s") or env.get("CAUSALKV_CAUSAL_WAIT_S")
    replica_overrides: dict[str, float | int] = {}
    if causal_wait is not None:
        replica_overrides["causal_wait_s"] = _float("CAUSALKV_CAUSAL_WAIT_S", str(causal_wait))
    waiting = flags.get("waiting_requests_max") or env.get("CAUSALKV_WAITING_REQUESTS_MAX")
    if waiting is not None:
        replica_overrides["waiting_requests_max"] = _int("CAUSALKV_WAITING_REQUESTS_MAX", waiting)
    replica = ReplicaSettings(**replica_overrides)  # type: ignore[arg-type]

    def optional_path(flag_name: str, env_name: str) -> Path | None:
        value = flag(flag_name) or env.get(env_name)
        return Path(value) if value else None

    extra: dict[str, object] = {}
    concurrent = flags.get("concurrent_requests_max") or env.get("CAUSALKV_CONCURRENT_REQUESTS_MAX")
    if concurrent is not None:
        extra["concurrent_requests_max"] = _int("CAUSALKV_CONCURRENT_REQUESTS_MAX", concurrent)
    body_max = flags.get("request_body_bytes_max") or env.get("CAUSALKV_REQUEST_BODY_BYTES_MAX")
    if body_max is not None:
        extra["request_body_bytes_max"] = _int("CAUSALKV_REQUEST_BODY_BYTES_MAX", body_max)

    log_level = (flag("log_level") or env.get("CAUSALKV_LOG_LEVEL") or "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise SettingsError(
            f"CAUSALKV_LOG_LEVEL must be debug, info, warning or error, got {log_level!r}"
        )

    settings = NodeSettings(
        listen_host=listen_host,
        listen_port=listen_port,
        node_id=node_id,
        advertise_address=advertise_address,
        data_dir=data_dir,
        storage=storage,
        cluster_name=flag("cluster_name") or env.get("CAUSALKV_CLUSTER_NAME") or "causalkv",
        cluster_secret=secret,
        client_token=flag("client_token") or env.get("CAUSALKV_CLIENT_TOKEN"),
        unsafe_async_commit=bool(flags.get("unsafe_async_commit"))
        or _truthy(env.get("CAUSALKV_UNSAFE_ASYNC_COMMIT")),
        log_level=log_level,
        test_hooks=bool(flags.get("test_hooks")) or _truthy(env.get("CAUSALKV_TEST_HOOKS")),
        replica=replica,
        tls_certificate=optional_path("tls_certificate", "CAUSALKV_TLS_CERTIFICATE"),
        tls_key=optional_path("tls_key", "CAUSALKV_TLS_KEY"),
        tls_ca=optional_path("tls_ca", "CAUSALKV_TLS_CA"),
        **extra,  # type: ignore[arg-type]
    )
    settings.validate()
    return settings
