"""The peer HTTP client over real loopback sockets: keep-alive reuse, and no
second attempt for requests that must not run twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from causalkv.runtime.http_client import HttpClientPool, PeerUnavailable

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Server:
    """Answers the first request on each connection, then reads the next one
    and drops the connection without answering (as a node that ran a request
    and crashed, or closed an idle connection just as a request came in)."""

    def __init__(self) -> None:
        self.answers: tuple[bool, ...] = (True, False)
        """Per connection, in order: whether each request gets an answer."""
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for answered in self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(await reader.readexactly(length))
                if answered:
                    writer.write(OK)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _run(scenario: Callable[[Server, HttpClientPool, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Server()
        address = await server.start()
        pool = HttpClientPool()
        try:
            await scenario(server, pool, address)
        finally:
            pool.close()
            await server.stop()

    asyncio.run(main())


def test_a_request_that_may_run_twice_is_resent_on_a_fresh_connection() -> None:
    async def scenario(server: Server, pool: HttpClientPool, address: str) -> None:
        first = await pool.request(address, "POST", "/", b"one", {}, 2.0)
        assert first.status == 200
        again = await pool.request(address, "POST", "/", b"two", {}, 2.0)
        assert again.status == 200
        # Sent on the kept-alive connection (dropped unanswered), then once more.
        assert server.requests == [b"one", b"two", b"two"]
        assert server.connections == 2

    _run(scenario)


def test_a_fresh_request_is_never_sent_twice() -> None:
    """A forwarded write goes on a fresh connection: if the peer drops it
    unanswered (it may have run it), it is not sent again, as a request on a
    reused connection would be."""

    async def scenario(server: Server, pool: HttpClientPool, address: str) -> None:
        await pool.request(address, "POST", "/", b"one", {}, 2.0)  # a connection kept alive
        server.answers = (False,)  # from now on every request is dropped unanswered
        with pytest.raises(PeerUnavailable):
            await pool.request(address, "POST", "/", b"write", {}, 2.0, fresh=True)
        assert server.requests == [b"one", b"write"]

    _run(scenario)


def test_a_fresh_request_neither_reuses_nor_keeps_its_connection() -> None:
    async def scenario(server: Server, pool: HttpClientPool, address: str) -> None:
        await pool.request(address, "POST", "/", b"one", {}, 2.0)
        answer = await pool.request(address, "POST", "/", b"fresh", {}, 2.0, fresh=True)
        assert answer.status == 200
        assert server.connections == 2, "not the kept-alive one"
        again = await pool.request(address, "POST", "/", b"fresh2", {}, 2.0, fresh=True)
        assert again.status == 200
        assert server.connections == 3, "the fresh one was not kept either"

    _run(scenario)
