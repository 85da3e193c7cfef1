"""Minimal ASGI plumbing: bounded body reading and JSON responses.

Bodies are refused before they are read whole: a ``Content-Length`` over the
limit is answered at once, and a chunked body is cut off as soon as it passes
the limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()

JSON_HEADERS = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    pass


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit_bytes: int) -> bytes:
    length = header(scope, b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = -1
        if declared > limit_bytes:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def decode_json(body: bytes) -> object:
    """Raises msgspec.DecodeError on malformed JSON."""
    return _json_decoder.decode(body)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = list(headers or JSON_HEADERS)
    all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: object, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(JSON_HEADERS)
    if extra_headers:
        headers.extend(extra_headers)
    await send_response(send, status, _json_encoder.encode(payload), headers)
