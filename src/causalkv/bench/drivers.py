"""Client sessions for each store the generator can drive.

A session is one client: one keep-alive connection and, for causalkv, one
causal session (the ``causal-metadata`` of the last answer is sent with the
next request). The same workloads and latency accounting run against every
store, so the figures compare like with like:

- ``causalkv`` (the sharded dialect, also the no-op ceiling server): ``GET``
  and ``PUT /data/<key>`` with JSON bodies;
- ``etcd``: the v3 HTTP/JSON gateway, ``POST /v3/kv/range`` and
  ``/v3/kv/put`` with base64 keys and values (reads are linearizable, the
  default; lag probes use serializable reads of one member);
- ``redis``: RESP ``GET`` and ``SET``.

Statuses are HTTP statuses (Redis replies are mapped: OK/bulk 200, nil 404,
error 500); negative statuses are client-side failures (see ``connection``).
Values are ASCII letters, digits and ``:`` by construction, so they are
placed into JSON bodies without escaping.
"""

from __future__ import annotations

import base64
import enum
from typing import Protocol

import msgspec

from causalkv.bench.connection import (
    ConnectionFailed,
    HttpConnection,
    RespConnection,
    open_http,
    open_resp,
)

EMPTY_METADATA = b"{}"


class StoreProtocol(enum.Enum):
    CAUSALKV = "causalkv"
    ETCD = "etcd"
    REDIS = "redis"


class Session(Protocol):
    """One benchmark client's connection (and causal session, where there is one)."""

    address: str
    metadata: bytes
    metadata_size: int

    async def connect(self) -> None: ...

    async def read(self, key: bytes) -> int: ...

    async def update(self, key: bytes, value: bytes) -> int: ...

    async def probe(self, key: bytes) -> tuple[int, bytes | None]:
        """Read ``key`` from this very server as a fresh client would (for lag)."""
        ...

    def abort_if_stuck(self, now: float, timeout_s: float) -> None: ...

    def reset(self) -> None:
        """Start a fresh causal session (metadata ``{}``)."""
        ...

    def close(self) -> None: ...


class _DataAnswer(msgspec.Struct):
    metadata: msgspec.Raw = msgspec.field(
        name="causal-metadata", default=msgspec.Raw(EMPTY_METADATA)
    )
    value: str | None = None


_data_decoder = msgspec.json.Decoder(_DataAnswer)


class _HttpSession:
    """Connection handling shared by the HTTP stores: lazy (re)connects."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.host_header = address.encode("ascii")
        self.connection: HttpConnection | None = None
        self.metadata = EMPTY_METADATA
        self.metadata_size = 0

    async def connect(self) -> None:
        if self.connection is None or self.connection.closed_error is not None:
            self.connection = await open_http(self.address)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            connection = self.connection
            if connection is None or connection.closed_error is not None:
                await self.connect()
                connection = self.connection
                assert connection is not None
            return await connection.send(request)
        except ConnectionFailed as error:
            if self.connection is not None:
                self.connection.close()
                self.connection = None
            return error.status, b""

    def abort_if_stuck(self, now: float, timeout_s: float) -> None:
        if self.connection is not None:
            self.connection.abort_if_stuck(now, timeout_s)

    def reset(self) -> None:
        self.metadata = EMPTY_METADATA

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def frame(self, method: bytes, path: bytes, body: bytes) -> bytes:
        return b"".join(
            (
                method,
                b" ",
                path,
                b" HTTP/1.1\r\nHost: ",
                self.host_header,
                b"\r\nContent-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )


class CausalKvSession(_HttpSession):
    """The sharded dialect; carries ``causal-metadata`` from answer to request."""

    async def read(self, key: bytes) -> int:
        metadata = self.metadata
        self.metadata_size = len(metadata)
        body = b'{"causal-metadata":' + metadata + b"}"
        status, payload = await self.exchange(self.frame(b"GET", b"/data/" + key, body))
        if status == 200 or status == 404:
            self._absorb(payload)
        return status

    async def update(self, key: bytes, value: bytes) -> int:
        metadata = self.metadata
        self.metadata_size = len(metadata)
        body = b'{"value":"' + value + b'","causal-metadata":' + metadata + b"}"
        status, payload = await self.exchange(self.frame(b"PUT", b"/data/" + key, body))
        if status == 200:
            self._absorb(payload)
        return status

    async def probe(self, key: bytes) -> tuple[int, bytes | None]:
        body = b'{"causal-metadata":{}}'
        status, payload = await self.exchange(self.frame(b"GET", b"/data/" + key, body))
        if status != 200:
            return status, None
        try:
            answer = _data_decoder.decode(payload)
        except msgspec.DecodeError:
            return status, None
        return status, None if answer.value is None else answer.value.encode()

    def _absorb(self, payload: bytes) -> None:
        try:
            answer = _data_decoder.decode(payload)
        except msgspec.DecodeError:
            return
        self.metadata = bytes(answer.metadata)


class _EtcdKeyValue(msgspec.Struct):
    value: str = ""


class _EtcdRange(msgspec.Struct):
    kvs: list[_EtcdKeyValue] = msgspec.field(default_factory=list)


_etcd_range_decoder = msgspec.json.Decoder(_EtcdRange)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class EtcdSession(_HttpSession):
    """etcd v3's HTTP/JSON gateway (grpc-gateway). No causal metadata."""

    async def read(self, key: bytes) -> int:
        body = b'{"key":"' + _b64(key) + b'"}'
        status, payload = await self.exchange(self.frame(b"POST", b"/v3/kv/range", body))
        if status == 200 and b'"kvs"' not in payload:
            return 404
        return status

    async def update(self, key: bytes, value: bytes) -> int:
        body = b'{"key":"' + _b64(key) + b'","value":"' + _b64(value) + b'"}'
        status, _ = await self.exchange(self.frame(b"POST", b"/v3/kv/put", body))
        return status

    async def probe(self, key: bytes) -> tuple[int, bytes | None]:
        body = b'{"key":"' + _b64(key) + b'","serializable":true}'
        status, payload = await self.exchange(self.frame(b"POST", b"/v3/kv/range", body))
        if status != 200:
            return status, None
        try:
            answer = _etcd_range_decoder.decode(payload)
        except msgspec.DecodeError:
            return status, None
        if not answer.kvs:
            return 404, None
        return 200, base64.b64decode(answer.kvs[0].value)


class RedisSession:
    """Redis over RESP: ``GET`` and ``SET``. No causal metadata."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connection: RespConnection | None = None
        self.metadata = EMPTY_METADATA
        self.metadata_size = 0

    async def connect(self) -> None:
        if self.connection is None or self.connection.closed_error is not None:
            self.connection = await open_resp(self.address)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            connection = self.connection
            if connection is None or connection.closed_error is not None:
                await self.connect()
                connection = self.connection
                assert connection is not None
            return await connection.send(request)
        except ConnectionFailed as error:
            self.close()
            return error.status, b""

    async def read(self, key: bytes) -> int:
        status, _ = await self._exchange(_resp_command(b"GET", key))
        return status

    async def update(self, key: bytes, value: bytes) -> int:
        status, _ = await self._exchange(_resp_command(b"SET", key, value))
        return status

    async def probe(self, key: bytes) -> tuple[int, bytes | None]:
        status, body = await self._exchange(_resp_command(b"GET", key))
        return status, body if status == 200 else None

    def abort_if_stuck(self, now: float, timeout_s: float) -> None:
        if self.connection is not None:
            self.connection.abort_if_stuck(now, timeout_s)

    def reset(self) -> None:
        """Redis has no causal session."""

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _resp_command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def make_session(protocol: StoreProtocol, address: str) -> Session:
    """A not yet connected session for one client of ``protocol`` at ``address``."""
    if protocol is StoreProtocol.CAUSALKV:
        return CausalKvSession(address)
    if protocol is StoreProtocol.ETCD:
        return EtcdSession(address)
    return RedisSession(address)
