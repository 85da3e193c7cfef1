"""A small blocking JSON-over-HTTP helper for integration tests (keep-alive per
thread, bodies on GET and DELETE as the dialects require)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_local = threading.local()


class _Connection(http.client.HTTPConnection):
    """http.client sends headers and body in separate writes; without TCP_NODELAY
    Nagle's algorithm then stalls every request with a body for an ACK."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes


def _connection(address: str, timeout_s: float) -> http.client.HTTPConnection:
    pool: dict[str, http.client.HTTPConnection] = getattr(_local, "pool", None) or {}
    _local.pool = pool
    connection = pool.get(address)
    if connection is None:
        host, _, port = address.rpartition(":")
        connection = _Connection(host, int(port), timeout=timeout_s)
        pool[address] = connection
    connection.timeout = timeout_s
    if connection.sock is not None:
        connection.sock.settimeout(timeout_s)
    return connection


def request(
    address: str,
    method: str,
    path: str,
    body: object = None,
    raw: bytes | None = None,
    timeout_s: float = 30.0,
    headers: dict[str, str] | None = None,
) -> Response:
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    pooled = threading.current_thread() is threading.main_thread()
    for attempt in range(2):
        if pooled:
            connection = _connection(address, timeout_s)
        else:
            host, _, port = address.rpartition(":")
            connection = _Connection(host, int(port), timeout=timeout_s)
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            if not pooled:
                connection.close()
            break
        except (ConnectionError, http.client.HTTPException, BrokenPipeError):
            connection.close()
            if pooled:
                _local.pool.pop(address, None)
            if attempt == 1:
                raise
        except TimeoutError:
            connection.close()
            if pooled:
                _local.pool.pop(address, None)
            raise
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = None
    return Response(response.status, decoded, dict(response.getheaders()), data)


def put(
    address: str, key: str, value: str, metadata: object | None = None, **kwargs: Any
) -> Response:
    return request(
        address,
        "PUT",
        f"/data/{quote(key, safe='')}",
        {"value": value, "causal-metadata": metadata or {}},
        **kwargs,
    )


def get(address: str, key: str, metadata: object | None = None, **kwargs: Any) -> Response:
    return request(
        address,
        "GET",
        f"/data/{quote(key, safe='')}",
        {"causal-metadata": metadata or {}},
        **kwargs,
    )


def delete(address: str, key: str, metadata: object | None = None, **kwargs: Any) -> Response:
    return request(
        address,
        "DELETE",
        f"/data/{quote(key, safe='')}",
        {"causal-metadata": metadata or {}},
        **kwargs,
    )


def listing(address: str, metadata: object | None = None, **kwargs: Any) -> Response:
    return request(address, "GET", "/data", {"causal-metadata": metadata or {}}, **kwargs)
