"""What `Client` and `AsyncClient` share: construction, settings, the engine, HTTP helpers."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpcore

from causalkv import __version__
from causalkv.client.engine import Engine
from causalkv.client.protocol import HttpRequest, HttpResponse, TransportFailure
from causalkv.client.routing import Router, parse_addresses
from causalkv.client.session import Session
from causalkv.client.settings import ClientSettings

USER_AGENT = f"causalkv-python/{__version__}"
MISSING: Any = object()
"""Sentinel: no default was given to ``get``."""


class ClientBase:
    """Construction and state common to the blocking and the asyncio client."""

    def __init__(
        self,
        nodes: str | Iterable[str],
        session: Session | str | Mapping[str, object] | None = None,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
        client_token: str | None = None,
        cluster_secret: str | None = None,
        settings: ClientSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        overrides: dict[str, Any] = {}
        if timeout_s is not None:
            overrides["timeout_s"] = timeout_s
        if retries is not None:
            overrides["retries"] = retries
        if client_token is not None:
            overrides["client_token"] = client_token
        if cluster_secret is not None:
            overrides["cluster_secret"] = cluster_secret
        self._settings = dataclasses.replace(settings or ClientSettings(), **overrides)
        self._seeds = parse_addresses(nodes)
        self._session = Session.coerce(session)
        self._router = Router(self._seeds, self._settings, time.monotonic, rng)
        self._engine = Engine(self._router, self._session, self._settings)
        self._data_headers = base_headers(self._settings.client_token)
        self._admin_headers = base_headers(self._settings.cluster_secret)
        self._start_transport()

    def _start_transport(self) -> None:
        """Open the connection pool (each client class brings its own)."""
        raise NotImplementedError

    @property
    def session(self) -> Session:
        """The causal session this client carries; export it, merge into it, share it."""
        return self._session

    @property
    def settings(self) -> ClientSettings:
        """The settings in force (timeouts, retries, pooling)."""
        return self._settings

    @property
    def seeds(self) -> tuple[str, ...]:
        """The node addresses the client was given."""
        return self._seeds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seeds={list(self._seeds)!r}, session={self._session!r})"

    # -- HTTP plumbing shared by both transports ---------------------------------------------------

    def _pool_options(self) -> dict[str, Any]:
        settings = self._settings
        return {
            "max_connections": settings.connections_max,
            "max_keepalive_connections": settings.keepalive_connections_max,
            "keepalive_expiry": settings.keepalive_expiry_s,
        }

    def _headers(self, request: HttpRequest) -> list[tuple[bytes, bytes]]:
        if request.admin:
            return self._admin_headers
        return self._data_headers


def base_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    """Headers of every request; ``Host`` and ``Content-Length`` are added by httpcore."""
    headers = [(b"Content-Type", b"application/json"), (b"User-Agent", USER_AGENT.encode())]
    if token is not None:
        headers.append((b"Authorization", b"Bearer " + token.encode()))
    return headers


def url_of(request: HttpRequest) -> httpcore.URL:
    """The URL of a request (plain HTTP: nodes speak no TLS)."""
    host, _, port = request.address.rpartition(":")
    return httpcore.URL(
        scheme=b"http",
        host=host.strip("[]").encode("idna"),
        port=int(port),
        target=request.path.encode("ascii"),
    )


def timeouts_of(request: HttpRequest, settings: ClientSettings) -> dict[str, Any]:
    """httpcore's per-request extensions: connect, read, write and pool timeouts."""
    return {
        "timeout": {
            "connect": min(settings.connect_timeout_s, request.timeout_s),
            "read": request.timeout_s,
            "write": request.timeout_s,
            "pool": request.timeout_s,
        }
    }


def response_from(response: httpcore.Response, elapsed_s: float) -> HttpResponse:
    """Our transport-neutral response from an httpcore one (body already read)."""
    retry_after_s: float | None = None
    for name, value in response.headers:
        if name.lower() == b"retry-after":
            try:
                retry_after_s = max(0.0, float(value))
            except ValueError:
                retry_after_s = None
    return HttpResponse(response.status, response.content, retry_after_s, elapsed_s)


# What a transport error means for the request: could the node have received it?
TRANSPORT_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.RemoteProtocolError,
)


def failure_from(error: Exception, request: HttpRequest) -> TransportFailure:
    """Classify an httpcore error: could the node have received the request?"""
    if isinstance(error, httpcore.ConnectError | httpcore.ConnectTimeout):
        return TransportFailure(f"cannot connect: {error or type(error).__name__}", False)
    if isinstance(error, httpcore.PoolTimeout):
        return TransportFailure("no free connection in the client's pool", False)
    if isinstance(error, httpcore.TimeoutException):
        return TransportFailure(f"no answer within {request.timeout_s:g} s", True)
    return TransportFailure(f"{type(error).__name__}: {error}"[:300], True)


def view_addresses(view: Mapping[str, Any] | list[Any]) -> list[str]:
    """Every node address in a view given as ``{shard: [...]}``, ``{"view": ...}`` or a list."""
    body: Any = view.get("view", view) if isinstance(view, Mapping) else view
    members: list[Any] = []
    if isinstance(body, Mapping):
        for nodes in body.values():
            if isinstance(nodes, list):
                members.extend(nodes)
    elif isinstance(body, list):
        members = body
    addresses = []
    for member in members:
        address = member.get("address") if isinstance(member, Mapping) else member
        if isinstance(address, str):
            addresses.append(address)
    return addresses
