"""Raw keep-alive connections for the load generator: HTTP/1.1 and RESP.

Why not ``causalkv.runtime.http_client``: that pool is built for many peers
(stream reader/writer pairs, a pool lookup and a ``wait_for`` per request).
A benchmark client owns exactly one connection with one request in flight,
so an ``asyncio.Protocol`` that hands the parsed response to a future is
the cheapest thing that works: no per-request timers (a watchdog aborts
connections stuck longer than the timeout), no stream buffering layers.
HTTP responses are parsed by httptools (the C parser uvicorn uses), so
``Content-Length`` and chunked bodies (etcd's gateway) both work.
"""

from __future__ import annotations

import asyncio
import time

import httptools

STATUS_CONNECTION_ERROR = -1
STATUS_TIMEOUT = -2
STATUS_PROTOCOL_ERROR = -3
RESPONSE_BYTES_MAX = 64 * 1024 * 1024


class ConnectionFailed(ConnectionError):
    """The server closed the connection, sent garbage, or did not answer in time."""

    def __init__(self, message: str, status: int = STATUS_CONNECTION_ERROR) -> None:
        super().__init__(message)
        self.status = status


class _Exchange(asyncio.Protocol):
    """Common part: one transport, one pending future, a start time for the watchdog."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.started_at = 0.0
        self.closed_error: ConnectionFailed | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_error = ConnectionFailed(f"connection lost: {exc!r}")
        self._fail(self.closed_error)

    def _fail(self, error: ConnectionFailed) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _finish(self, status: int, body: bytes) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write a request; the future resolves to ``(status, body)``."""
        if self.closed_error is not None or self.transport is None:
            raise self.closed_error or ConnectionFailed("not connected")
        if self.waiter is not None:
            raise RuntimeError("one request at a time on a benchmark connection")
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.started_at = time.monotonic()
        self.transport.write(data)
        return waiter

    def abort_if_stuck(self, now: float, timeout_s: float) -> None:
        """Called by the watchdog: give up on a request older than ``timeout_s``."""
        if self.waiter is not None and now - self.started_at > timeout_s:
            self._fail(ConnectionFailed(f"no answer in {timeout_s} s", STATUS_TIMEOUT))
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.closed_error is None:
            self.closed_error = ConnectionFailed("closed")


class HttpConnection(_Exchange):
    """A keep-alive HTTP/1.1 connection; requests are pre-framed bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.parser = httptools.HttpResponseParser(self)
        self.body_parts: list[bytes] = []
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > RESPONSE_BYTES_MAX:
            self._fail(ConnectionFailed("response too large", STATUS_PROTOCOL_ERROR))
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionFailed(f"bad response: {error!r}", STATUS_PROTOCOL_ERROR))
            self.close()

    def on_body(self, body: bytes) -> None:
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        parts = self.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.body_parts = []
        self.received = 0
        self._finish(self.parser.get_status_code(), body)


class RespConnection(_Exchange):
    """A Redis connection. Replies map to pseudo statuses: a bulk string or
    ``+OK`` is 200 (body = the bulk string), a nil bulk is 404, ``-ERR`` is 500."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > RESPONSE_BYTES_MAX:
            self._fail(ConnectionFailed("reply too large", STATUS_PROTOCOL_ERROR))
            self.close()
            return
        try:
            parsed = parse_resp_reply(self.buffer)
        except (ConnectionFailed, ValueError) as error:
            self._fail(ConnectionFailed(f"bad reply: {error!r}", STATUS_PROTOCOL_ERROR))
            self.close()
            return
        if parsed is None:
            return
        status, body, used = parsed
        del self.buffer[:used]
        self._finish(status, body)


def parse_resp_reply(buffer: bytes | bytearray) -> tuple[int, bytes, int] | None:
    """One complete RESP reply at the start of ``buffer`` as (status, body, bytes
    used), or None if more bytes are needed. Only the reply kinds GET and SET
    produce are handled (simple string, error, integer, bulk string)."""
    line_end = buffer.find(b"\r\n")
    if line_end < 0:
        return None
    kind = buffer[0:1]
    if kind == b"$":
        length = int(buffer[1:line_end])
        if length < 0:
            return 404, b"", line_end + 2
        end = line_end + 2 + length
        if len(buffer) < end + 2:
            return None
        return 200, bytes(buffer[line_end + 2 : end]), end + 2
    if kind in (b"+", b":"):
        return 200, bytes(buffer[1:line_end]), line_end + 2
    if kind == b"-":
        return 500, bytes(buffer[1:line_end]), line_end + 2
    raise ConnectionFailed(f"unexpected RESP reply {bytes(buffer[:40])!r}", STATUS_PROTOCOL_ERROR)


async def open_http(address: str, timeout_s: float = 5.0) -> HttpConnection:
    """Connect to ``host:port`` (TCP_NODELAY is asyncio's default)."""
    host, port = split_address(address)
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(HttpConnection, host, port), timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise ConnectionFailed(f"cannot connect to {address}: {error!r}") from error
    return protocol


async def open_resp(address: str, timeout_s: float = 5.0) -> RespConnection:
    host, port = split_address(address)
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(RespConnection, host, port), timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise ConnectionFailed(f"cannot connect to {address}: {error!r}") from error
    return protocol


def split_address(address: str) -> tuple[str, int]:
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"address must be host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
