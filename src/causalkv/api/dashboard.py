"""The operator dashboard: ``GET /dashboard`` and the JSON it polls.

The page (``dashboard.html``: one file, inline CSS and JavaScript, nothing
fetched from elsewhere) polls the node that served it once a second:

* ``GET /dashboard/api/cluster``: this node gathers every node's snapshot
  (``GET /dashboard/api/node``: ``/status`` plus request, wait and lag figures)
  server-side, over the peer HTTP client, and answers them in one document,
  with the ring and the shards of the newest view any node reported;
* ``GET /dashboard/api/key?key=K``: what each replica of K's shard holds for it
  (``/inspect/key/K`` on each).

Why gather server-side rather than have the browser call every node: nodes
often listen on addresses the operator's browser cannot reach (a container
network), browsers refuse cross-origin reads unless every route sends CORS
headers, and one request per second per open dashboard is cheaper than N. The
answers are cached for ``CACHE_S`` and concurrent polls share one gathering,
so many open dashboards cost the cluster the same as one. The JSON routes also
send ``Access-Control-Allow-Origin: *``, so a page whose node went down can
carry on through another node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import msgspec

from causalkv import __version__
from causalkv.api.http import Receive, Scope, Send, send_response
from causalkv.api.status import key_inspection, node_status
from causalkv.core.placement import key_position
from causalkv.core.view import View, parse_sharded_view
from causalkv.core.writer import describe_writer
from causalkv.runtime.http_client import PeerUnavailable

if TYPE_CHECKING:
    from causalkv.api.app import Api
    from causalkv.api.observability import Observability

CACHE_S = 0.4
"""How long a gathered cluster snapshot is reused (the page polls every second)."""
FETCH_TIMEOUT_S = 0.9
"""A node that has not answered within this is shown as down for this poll."""
RING_SAMPLES = 8192
RING_BINS = 360
KEY_CHARS_MAX = 4096

_encoder = msgspec.json.Encoder()
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"access-control-allow-origin", b"*"),
    (b"cache-control", b"no-store"),
]
_HTML_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"img-src data:; connect-src *; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def _addresses(view_json: object) -> list[tuple[str, str, object]]:
    """(shard, address, id) of every node of a sharded-dialect view rendering."""
    found: list[tuple[str, str, object]] = []
    if isinstance(view_json, dict):
        for shard, nodes in view_json.items():
            if isinstance(nodes, list):
                for node in nodes:
                    if isinstance(node, dict) and isinstance(node.get("address"), str):
                        found.append((str(shard), node["address"], node.get("id")))
    return found


class Dashboard:
    def __init__(self, api: Api, observability: Observability) -> None:
        self.api = api
        self.runtime = api.runtime
        self.observability = observability
        self._html: bytes | None = None
        self._cached: tuple[float, bytes] | None = None
        self._gathering: asyncio.Task[bytes] | None = None
        self._ring_cache: tuple[bytes, dict[str, object]] | None = None

    # -- this node ------------------------------------------------------------------------------

    def node_snapshot(self) -> dict[str, object]:
        runtime = self.runtime
        replica = runtime.replica
        snapshot = node_status(runtime)
        summary = self.observability.summary()
        summary["writer"] = None if replica.writer is None else describe_writer(replica.writer)
        summary["writer_seq"] = replica.writer_seq
        summary["cluster_name"] = runtime.settings.cluster_name
        summary["wall_time"] = time.time()
        snapshot["dashboard"] = summary
        return snapshot

    # -- peers ----------------------------------------------------------------------------------

    async def _fetch(self, address: str, path: str) -> tuple[Any, str | None, float]:
        """(decoded JSON or None, error or None, round trip seconds)."""
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                self.runtime.transport.pool.request(address, "GET", path, b"", {}, FETCH_TIMEOUT_S),
                FETCH_TIMEOUT_S,
            )
        except (PeerUnavailable, TimeoutError, OSError) as error:
            return None, str(error) or type(error).__name__, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if response.status != 200:
            return None, f"answered HTTP {response.status}", elapsed
        try:
            return msgspec.json.decode(response.body), None, elapsed
        except (msgspec.DecodeError, RecursionError) as error:
            return None, f"malformed answer: {error}", elapsed

    async def _node(self, address: str) -> dict[str, object]:
        if address == self.runtime.replica.self_address:
            return {"up": True, "error": None, "rtt_ms": 0.0, "snapshot": self.node_snapshot()}
        body, error, elapsed = await self._fetch(address, "/dashboard/api/node")
        if error == "answered HTTP 404":  # a node without the dashboard: its /status will do
            body, error, elapsed = await self._fetch(address, "/status")
        up = error is None and isinstance(body, dict)
        return {
            "up": up,
            "error": error if not up else None,
            "rtt_ms": round(elapsed * 1000, 2),
            "snapshot": body if up else None,
        }

    async def _gather_cluster(self) -> bytes:
        replica = self.runtime.replica
        view = replica.view
        own = replica.self_address
        members: list[tuple[str, str, object]] = []
        if view is not None:
            members = _addresses(view.to_sharded_json())
        change = replica.change
        if change is not None:
            members += _addresses(change.proposal.to_sharded_json())
        order: list[str] = []
        for _, address, _ in members:
            if address not in order:
                order.append(address)
        if own is not None and own not in order:
            order.append(own)
        if not order:
            order.append("")  # no address yet: show this node alone
        results: dict[str, dict[str, object]] = {}

        async def visit(addresses: list[str]) -> None:
            answers = await asyncio.gather(
                *(self._local_or_remote(address) for address in addresses)
            )
            results.update(zip(addresses, answers, strict=True))

        await visit(order)
        # A node may know a newer view than this one (this node was partitioned, say).
        newest_epoch = 0 if view is None else view.epoch
        newest_view: object = {} if view is None else view.to_sharded_json()
        for result in results.values():
            snapshot = result.get("snapshot")
            if (
                isinstance(snapshot, dict)
                and isinstance(snapshot.get("epoch"), int)
                and snapshot["epoch"] > newest_epoch
                and snapshot.get("view")
            ):
                newest_epoch = snapshot["epoch"]
                newest_view = snapshot["view"]
        missing = [a for _, a, _ in _addresses(newest_view) if a not in results]
        if missing:
            await visit(missing)
            order += missing
        shards_of = {address: shard for shard, address, _ in _addresses(newest_view)}
        ids_of = {address: node_id for _, address, node_id in _addresses(newest_view)}
        nodes = [
            {
                "address": address or "(this node)",
                "id": ids_of.get(address),
                "shard": shards_of.get(address),
                "self": address == own or not address,
                **results[address],
            }
            for address in order
        ]
        document = {
            "served_by": own,
            "version": __version__,
            "cluster_name": self.runtime.settings.cluster_name,
            "generated_at": time.time(),
            "epoch": newest_epoch,
            "view": newest_view,
            "ring": self._ring(newest_view),
            "nodes": nodes,
        }
        return _encoder.encode(document)

    async def _local_or_remote(self, address: str) -> dict[str, object]:
        if not address:
            return {"up": True, "error": None, "rtt_ms": 0.0, "snapshot": self.node_snapshot()}
        return await self._node(address)

    def _ring(self, view_json: object) -> dict[str, object]:
        """Ring ownership of the view: coarse arcs to draw and each shard's share of keys."""
        shard_names = list(view_json) if isinstance(view_json, dict) else []
        if not shard_names:
            return {"shards": [], "bins": [], "share": {}}
        try:
            view: View = parse_sharded_view(view_json)
        except ValueError:
            return {"shards": shard_names, "bins": [], "share": {}}
        digest = view.digest
        if self._ring_cache is not None and self._ring_cache[0] == digest:
            return self._ring_cache[1]
        ring = view.ring
        names = [shard.name for shard in view.shards]
        span = 2**64
        counts = [0] * len(names)
        for sample in range(RING_SAMPLES):
            counts[ring.shard_index_at((2 * sample + 1) * span // (2 * RING_SAMPLES))] += 1
        bins = [
            ring.shard_index_at((2 * index + 1) * span // (2 * RING_BINS))
            for index in range(RING_BINS)
        ]
        rendered: dict[str, object] = {
            "shards": names,
            "bins": bins,
            "share": {name: counts[i] / RING_SAMPLES for i, name in enumerate(names)},
        }
        self._ring_cache = (digest, rendered)
        return rendered

    async def cluster_json(self) -> bytes:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        task = self._gathering
        if task is None or task.done():
            task = self._gathering = asyncio.get_running_loop().create_task(
                self._gather_and_cache(), name="causalkv-dashboard-gather"
            )
        return await asyncio.shield(task)

    async def _gather_and_cache(self) -> bytes:
        body = await self._gather_cluster()
        self._cached = (time.monotonic(), body)
        return body

    async def key_json(self, key: str) -> tuple[int, bytes]:
        replica = self.runtime.replica
        view = replica.view
        if view is None:
            return 409, _encoder.encode({"error": "no view is installed on this node"})
        index = view.shard_index_for_key(key)
        replicas = list(view.replicas(index))
        path = "/inspect/key/" + quote(key, safe="")

        async def inspect(address: str) -> dict[str, object]:
            if address == replica.self_address:
                return {"address": address, "up": True, "data": key_inspection(self.runtime, key)}
            body, error, _ = await self._fetch(address, path)
            return {"address": address, "up": error is None, "error": error, "data": body}

        answers = await asyncio.gather(*(inspect(address) for address in replicas))
        visible = set()
        reachable = 0
        for answer in answers:
            data = answer.get("data")
            if answer["up"] and isinstance(data, dict):
                reachable += 1
                winner = next(
                    (
                        v
                        for v in data.get("versions", [])
                        if isinstance(v, dict) and v.get("visible")
                    ),
                    None,
                )
                visible.add(None if winner is None else (winner.get("writer"), winner.get("seq")))
        document = {
            "key": key,
            "shard": view.shards[index].name,
            "position": key_position(key) / 2**64,
            "epoch": view.epoch,
            "replicas": answers,
            "reachable": reachable,
            "agree": reachable > 0 and len(visible) == 1,
        }
        return 200, _encoder.encode(document)

    # -- routes ---------------------------------------------------------------------------------

    async def page(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._html is None:
            self._html = resources.files("causalkv.api").joinpath("dashboard.html").read_bytes()
        await send_response(send, 200, self._html, list(_HTML_HEADERS))

    async def node_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, _encoder.encode(self.node_snapshot()), list(_JSON_HEADERS))

    async def cluster_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, await self.cluster_json(), list(_JSON_HEADERS))

    async def key_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        raw = query.get("key", [""])[0]
        if not raw or len(raw) > KEY_CHARS_MAX:
            status, body = 400, _encoder.encode({"error": "give a non-empty key= (URL-encoded)"})
        else:
            status, body = await self.key_json(raw)
        await send_response(send, status, body, list(_JSON_HEADERS))


def install(api: Api, observability: Observability) -> None:
    dashboard = Dashboard(api, observability)
    api.extra_routes[("GET", "/dashboard")] = dashboard.page
    api.extra_routes[("GET", "/dashboard/")] = dashboard.page
    api.extra_routes[("GET", "/dashboard/api/node")] = dashboard.node_route
    api.extra_routes[("GET", "/dashboard/api/cluster")] = dashboard.cluster_route
    api.extra_routes[("GET", "/dashboard/api/key")] = dashboard.key_route
