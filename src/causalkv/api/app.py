"""The ASGI application: routing and the two HTTP dialects.

Why a hand-written router over raw ASGI rather than Starlette or FastAPI:
measured on this machine (PUT, 100-byte JSON body, 64 connections, server on
one core) bare ASGI on uvicorn serves 23k requests/s, Starlette 15k and
FastAPI 5.8k. The API has a dozen fixed routes, so the framework would cost a
third of the node's ceiling for little. The OpenAPI description is written by
hand (``openapi.py``) and served at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

import msgspec

from causalkv.api import sharded, synckv
from causalkv.api.http import (
    BodyTooLarge,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_json,
    send_response,
)
from causalkv.api.observability import install as install_observability
from causalkv.core.view import View
from causalkv.runtime import logs
from causalkv.runtime.node import NodeFailed, NodeRuntime
from causalkv.runtime.peer_protocol import PEER_CONTENT_TYPE, PEER_PATH

log = logging.getLogger("causalkv.api")

ExtraRoute = Callable[[Scope, Receive, Send], Awaitable[None]]


class AddressConflict(ValueError):
    """A requested view names this node by another address than the one it serves under."""


RequestObserver = Callable[[str, str, int, float], None]
"""Called after every HTTP request with (method, route label, status, seconds)."""


def route_label(path: str) -> str:
    """A bounded set of labels for metrics (keys never become labels)."""
    if path.startswith("/data/"):
        return "/data/{key}"
    if path.startswith("/kvs/data/"):
        return "/kvs/data/{key}"
    if path.startswith("/inspect/key/"):
        return "/inspect/key/{key}"
    if path in _KNOWN_PATHS:
        return path.rstrip("/") or "/"
    return "other"


_KNOWN_PATHS = {
    "/ping", "/view", "/data", "/data/", "/kvs/data", "/kvs/data/", "/kvs/admin/view",
    "/kvs/internal/sync", "/status", "/metrics", "/openapi.json", "/dashboard", "/dashboard/",
    "/dashboard/api/node", "/dashboard/api/cluster", "/dashboard/api/key",
}  # fmt: skip
_UNLIMITED_PATHS = {"/ping", "/metrics"}


class Api:
    """The node's ASGI application."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.in_flight = 0
        self.extra_routes: dict[tuple[str, str], ExtraRoute] = {}
        self.observers: list[RequestObserver] = []
        self._local_hosts: set[str] | None = None
        from causalkv.api.status import status_route

        self.extra_routes[("GET", "/status")] = status_route(runtime)
        self.extra_routes[("GET", "/openapi.json")] = self._openapi
        if self.settings.test_hooks:
            self.extra_routes[("POST", "/debug/hold-outgoing")] = self._hold_outgoing
        self._request_ids = itertools.count(1)
        install_observability(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.in_flight >= self.settings.concurrent_requests_max
            and scope["path"] not in _UNLIMITED_PATHS
        ):
            await send_json(
                send, 503, {"error": "too many concurrent requests"}, [(b"retry-after", b"1")]
            )
            return
        self.in_flight += 1
        status = 0
        started = time.perf_counter()
        incoming_id = header(scope, b"x-request-id")
        log_token = logs.bind_request_id(
            incoming_id.decode("latin-1")[:64] if incoming_id else f"{next(self._request_ids):x}"
        )

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._route(scope, receive, observed_send if self.observers else send)
        except ClientDisconnected:
            pass
        except BodyTooLarge:
            if scope["method"] == "PUT" and scope["path"].startswith("/kvs/data/"):
                await send_json(send, 400, {"error": "val too large"})
            else:
                await send_json(send, 413, {"error": "request body too large"})
        except NodeFailed:
            await send_json(send, 500, {"error": "internal error; the node is stopping"})
        except AddressConflict as error:
            await send_json(send, 409, {"error": str(error)})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            await send_json(send, 500, {"error": "internal error"})
        finally:
            self.in_flight -= 1
            logs.reset_request_id(log_token)
            if self.observers:
                elapsed = time.perf_counter() - started
                label = route_label(scope["path"])
                for observer in self.observers:
                    observer(scope["method"], label, status, elapsed)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        limit = self.settings.request_body_bytes_max
        if path.startswith("/data/") or path.startswith("/kvs/data/"):
            prefix = "/data/" if path.startswith("/data/") else "/kvs/data/"
            key = self._key_from_path(scope, prefix)
            if method not in ("GET", "PUT", "DELETE"):
                await self._method_not_allowed(send, "GET, PUT, DELETE")
                return
            if not await self._client_allowed(scope, send):
                return
            body = await read_body(scope, receive, limit)
            siblings = b"siblings=1" in scope.get("query_string", b"")
            if prefix == "/data/":
                await sharded.data(self.runtime, send, method, key, body, siblings)
            else:
                await synckv.data(self.runtime, send, method, key, body, siblings)
            return
        if path.startswith("/inspect/key/"):
            from causalkv.api.status import key_inspection

            if not await self._client_allowed(scope, send):
                return
            raw = self._key_from_path(scope, "/inspect/key/")
            if isinstance(raw, bytes) or not raw:
                await send_json(send, 400, {"error": "key must be non-empty UTF-8"})
                return
            await send_json(send, 200, key_inspection(self.runtime, raw))
            return
        if path == PEER_PATH:
            if method != "POST":
                await self._method_not_allowed(send, "POST")
                return
            refusal = self._authorization(scope, self.settings.cluster_secret)
            if refusal:
                await self._refuse(send, refusal)
                return
            body = await read_body(scope, receive, self.settings.peer_body_bytes_max)
            status, reply = await self.runtime.handle_peer_call(body)
            await send_response(
                send, status, reply, [(b"content-type", PEER_CONTENT_TYPE.encode())]
            )
            return
        route = (method, path)
        if path == "/ping":
            if method != "GET":
                await self._method_not_allowed(send, "GET")
                return
            await send_json(send, 200, {"status": "ok"})
        elif path in ("/data", "/data/"):
            if method != "GET":
                await self._method_not_allowed(send, "GET")
                return
            if not await self._client_allowed(scope, send):
                return
            body = await read_body(scope, receive, limit)
            await sharded.listing(self.runtime, send, body)
        elif path in ("/kvs/data", "/kvs/data/"):
            if method != "GET":
                await self._method_not_allowed(send, "GET")
                return
            if not await self._client_allowed(scope, send):
                return
            body = await read_body(scope, receive, limit)
            await synckv.listing(self.runtime, send, body)
        elif path == "/view":
            if method == "GET":
                await sharded.get_view(self.runtime, send)
            elif method == "PUT":
                refusal = self._authorization(scope, self.settings.cluster_secret)
                if refusal:
                    await self._refuse(send, refusal)
                    return
                body = await read_body(scope, receive, limit)
                await sharded.put_view(self.runtime, send, body, self._self_address_for(scope))
            else:
                await self._method_not_allowed(send, "GET, PUT")
        elif path == "/kvs/admin/view":
            if method == "GET":
                await synckv.get_view(self.runtime, send)
                return
            if method not in ("PUT", "DELETE"):
                await self._method_not_allowed(send, "GET, PUT, DELETE")
                return
            refusal = self._authorization(scope, self.settings.cluster_secret)
            if refusal:
                await self._refuse(send, refusal)
                return
            body = await read_body(scope, receive, limit)
            if method == "PUT":
                await synckv.put_view(self.runtime, send, body, self._self_address_for(scope))
            else:
                await synckv.delete_view(self.runtime, send)
        elif route in self.extra_routes:
            await self.extra_routes[route](scope, receive, send)
        else:
            await send_json(send, 404, {"error": f"no such endpoint: {method} {path}"[:300]})

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        from causalkv.api.openapi import openapi_document

        await send_json(send, 200, openapi_document())

    async def _hold_outgoing(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Test hook: ``{"peers": [...]}`` holds messages to those peers, ``{"peers": "all"}``
        to every peer, ``{"peers": []}`` releases them."""
        refusal = self._authorization(scope, self.settings.cluster_secret)
        if refusal:
            await self._refuse(send, refusal)
            return
        body = await read_body(scope, receive, 65536)
        parsed, error = json_or_error(body)
        peers = parsed.get("peers") if isinstance(parsed, dict) else None
        transport = self.runtime.transport
        if peers == "all":
            transport.held_destinations = None
        elif isinstance(peers, list) and all(isinstance(p, str) for p in peers):
            transport.held_destinations = set(peers)
        else:
            await send_json(send, 400, {"error": error or "peers must be a list or 'all'"})
            return
        await send_json(send, 200, {"held": "all" if peers == "all" else sorted(peers)})

    async def _method_not_allowed(self, send: Send, allowed: str) -> None:
        await send_json(send, 405, {"error": "method not allowed"}, [(b"allow", allowed.encode())])

    @staticmethod
    def _key_from_path(scope: Scope, prefix: str) -> str | bytes:
        """The key as UTF-8 text, or the raw bytes when they are not valid UTF-8."""
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is None:
            return str(scope["path"])[len(prefix) :]
        raw = raw_path.split(b"?", 1)[0][len(prefix) :]
        decoded = unquote_to_bytes(raw)
        try:
            return decoded.decode("utf-8")
        except UnicodeDecodeError:
            return decoded

    # -- authorisation (cluster secret, SPEC §7) ---------------------------------------------

    def _authorization(self, scope: Scope, *secrets: str | None) -> int:
        """0 when allowed; otherwise the status to refuse with (401 missing, 403 wrong).

        Compared in constant time; a refused request is answered before its body is
        read, so it never reaches the core.
        """
        configured = [secret for secret in secrets if secret is not None]
        if not configured:
            return 0
        value = header(scope, b"authorization")
        if value is None:
            return 401
        allowed = False
        for secret in configured:
            allowed |= hmac.compare_digest(value, b"Bearer " + secret.encode())
        return 0 if allowed else 403

    async def _client_allowed(self, scope: Scope, send: Send) -> bool:
        """Data endpoints: check the client token (when one is configured; the cluster
        secret also opens them), answering the refusal if there is one."""
        if self.settings.client_token is None:
            return True
        refusal = self._authorization(
            scope, self.settings.client_token, self.settings.cluster_secret
        )
        if refusal:
            await self._refuse(send, refusal)
            return False
        return True

    async def _refuse(self, send: Send, status: int) -> None:
        message = "missing credentials" if status == 401 else "wrong credentials"
        await send_json(send, status, {"error": message}, [(b"www-authenticate", b"Bearer")])

    # -- who am I? -------------------------------------------------------------------------------

    def _self_address_for(self, scope: Scope) -> Callable[[View], Awaitable[str | None]]:
        async def resolve(view: View) -> str | None:
            return await self.resolve_self_address(view, scope)

        return resolve

    async def resolve_self_address(self, view: View, scope: Scope) -> str | None:
        """This node's address in ``view``.

        In order: the address it already goes by (if the view names it), its
        node id (sharded views), its configured address, the address the client
        used, a local address on the listening port, a view hostname that
        resolves to a local address, and finally asking every candidate for its
        ``/status`` and recognising its own instance.
        """
        known = self.runtime.replica.self_address
        if known is not None and view.contains(known):
            return known
        found = self._resolve_cheaply(view, scope)
        if found is None:
            found = await self._resolve_by_dns(view)
        if found is None:
            found = await self._resolve_by_probe(view)
        if found is not None and known is not None and found != known:
            current = self.runtime.replica.view
            if current is not None and current.contains(known):
                raise AddressConflict(
                    f"this node is {known} in the current view but the new view names it"
                    f" {found}; an address is a node's identity: keep it, or remove the node"
                    " from the view first"
                )
            self.runtime.rename_self(found)
        return found if found is not None else known

    def _resolve_cheaply(self, view: View, scope: Scope) -> str | None:
        settings = self.settings
        if not view.flat:
            node = view.node_for_id(settings.node_id)
            if node is not None:
                return node.address
        if settings.advertise_address and view.contains(settings.advertise_address):
            return settings.advertise_address
        host_header = header(scope, b"host")
        if host_header is not None:
            host = host_header.decode("latin-1")
            if view.contains(host):
                return host
        server = scope.get("server")
        if server and server[0] is not None:
            address = f"{server[0]}:{server[1]}"
            if view.contains(address):
                return address
        local = self._local_host_names()
        matches = []
        for address in view.all_addresses():
            host, _, port = address.rpartition(":")
            if port == str(settings.listen_port) and host.strip("[]") in local:
                matches.append(address)
        return matches[0] if len(matches) == 1 else None

    async def _resolve_by_dns(self, view: View) -> str | None:
        """A view naming nodes by DNS name (Compose services, Kubernetes pods)."""
        local = self._local_host_names()
        port = str(self.settings.listen_port)

        def lookup() -> list[str]:
            matches = []
            for address in view.all_addresses():
                host, _, address_port = address.rpartition(":")
                if address_port != port:
                    continue
                try:
                    infos = socket.getaddrinfo(host.strip("[]"), None)
                except OSError:
                    continue
                if any(str(info[4][0]) in local for info in infos):
                    matches.append(address)
            return matches

        try:
            matches = await asyncio.wait_for(asyncio.to_thread(lookup), 5.0)
        except TimeoutError:
            return None
        return matches[0] if len(matches) == 1 else None

    async def _resolve_by_probe(self, view: View) -> str | None:
        """Ask each address of the view for its /status: the one that answers
        with this process's instance is this node (works through NAT too)."""
        instance = self.runtime.replica.incarnation.hex()
        pool = self.runtime.transport.pool

        async def probe(address: str) -> str | None:
            try:
                response = await pool.request(address, "GET", "/status", b"", {}, 1.0)
                body = msgspec.json.decode(response.body)
            except Exception:
                return None
            if isinstance(body, dict) and body.get("instance") == instance:
                return address
            return None

        results = await asyncio.gather(*(probe(a) for a in view.all_addresses()))
        matches = [address for address in results if address is not None]
        return matches[0] if len(matches) == 1 else None

    def _local_host_names(self) -> set[str]:
        if self._local_hosts is None:
            names = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
            hostname = socket.gethostname()
            names.add(hostname)
            try:
                for info in socket.getaddrinfo(hostname, None):
                    names.add(str(info[4][0]))
            except OSError:
                pass
            if self.settings.listen_host not in ("0.0.0.0", "::"):
                names.add(self.settings.listen_host)
            self._local_hosts = names
        return self._local_hosts


def json_or_error(body: bytes) -> tuple[object, str | None]:
    """Decode a JSON body; an empty body is None."""
    if not body.strip():
        return None, None
    try:
        return msgspec.json.decode(body), None
    except (msgspec.DecodeError, RecursionError) as error:
        return None, f"malformed JSON: {error}"[:300]
