"""The ceiling: a no-op HTTP server on the node's own server stack.

uvicorn + httptools + uvloop with the same settings as ``causalkv serve``,
serving a raw ASGI app that reads the request body and answers every route
with one fixed small JSON body. Whatever causalkv spends above this is the
store's own cost; what the generator gets from this is the most any server on
this stack can give it on this machine.

    python -m causalkv.bench.noop_server --listen 127.0.0.1:9000
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"value":"x","causal-metadata":{}}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
RESPONSE_BODY = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with ``BODY``; accept lifespan events."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))
    await send(START)
    await send(RESPONSE_BODY)


def main() -> None:
    parser = argparse.ArgumentParser(description="A no-op HTTP server (the benchmark ceiling).")
    parser.add_argument("--listen", default="127.0.0.1:9000", help="host:port")
    arguments = parser.parse_args()
    host, _, port = arguments.listen.rpartition(":")
    import uvicorn

    uvicorn.run(
        app,
        host=host or "127.0.0.1",
        port=int(port),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
