"""`AsyncClient`: the asyncio client, a thin driver of the engine's programs over ``httpcore.AsyncConnectionPool``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

import httpcore

from causalkv.client.base import (
    MISSING,
    TRANSPORT_ERRORS,
    ClientBase,
    failure_from,
    response_from,
    timeouts_of,
    url_of,
    view_addresses,
)
from causalkv.client.errors import KeyNotFound
from causalkv.client.protocol import (
    Effect,
    Gather,
    GatherResult,
    HttpRequest,
    Outcome,
    Program,
    Sleep,
)
from causalkv.client.results import NodeProbe, Reading, ShardListing
from causalkv.core.view import View

T = TypeVar("T")
D = TypeVar("D")


class AsyncClient(ClientBase):
    """An asyncio causalkv client with a causal session; same API as `Client`, awaited.

    ::

        async with AsyncClient("127.0.0.1:8081") as kv:
            await kv.put("greeting", "hello")
            print(await kv.get("greeting"))

    Operations of one client may run concurrently (e.g. in a task group); they
    share the session, so each sees at least what the others completed before
    it started. Listings of several shards run concurrently.
    """

    _http: httpcore.AsyncConnectionPool

    def _start_transport(self) -> None:
        self._http = httpcore.AsyncConnectionPool(**self._pool_options())

    # -- keys -----------------------------------------------------------------------------------

    @overload
    async def get(self, key: str) -> str: ...
    @overload
    async def get(self, key: str, default: D) -> str | D: ...
    async def get(self, key: str, default: Any = MISSING) -> Any:
        """The value of ``key``; ``default`` if given and the key has none, else `KeyNotFound`."""
        reading = await self.fetch(key)
        if reading.value is not None:
            return reading.value
        if default is not MISSING:
            return default
        raise KeyNotFound(key)

    async def fetch(self, key: str, *, siblings: bool = False) -> Reading:
        """Read ``key`` with details: value or ``None``, the node that served it, siblings."""
        return await self._run(self._engine.fetch(key, siblings))

    async def put(self, key: str, value: str) -> None:
        """Write ``value`` to ``key``; returns once a replica of the key's shard acknowledged it."""
        await self._run(self._engine.put(key, value))

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it had a value, False if there was nothing to delete."""
        return await self._run(self._engine.delete(key))

    async def contains(self, key: str) -> bool:
        """True if ``key`` has a value."""
        return (await self.fetch(key)).found

    async def items(self, shard: str | None = None) -> dict[str, str]:
        """Every key and value of the cluster, or of one shard (by name)."""
        if shard is not None:
            return (await self._run(self._engine.list_shard(shard))).items
        merged: dict[str, str] = {}
        for listing in await self.listings():
            merged.update(listing.items)
        return merged

    async def keys(self, shard: str | None = None) -> list[str]:
        """Every key, sorted; of one shard if ``shard`` is given."""
        return sorted(await self.items(shard))

    async def listings(self) -> list[ShardListing]:
        """One `ShardListing` per shard, fetched concurrently."""
        return await self._run(self._engine.list_all())

    # -- the cluster ----------------------------------------------------------------------------

    async def view(self, *, refresh: bool = False) -> View:
        """The view the client routes by (read from a node first if ``refresh`` or stale)."""
        if refresh:
            return await self._run(self._engine.refresh_view(force=True))
        return await self._run(self._engine.ensure_view())

    async def shard_for(self, key: str) -> str:
        """Name of the shard that owns ``key``."""
        view = await self.view()
        return view.shards[view.shard_index_for_key(key)].name

    async def replicas_for(self, key: str) -> list[str]:
        """Replicas of ``key``'s shard, in the order the client will try them."""
        await self.view()
        return self._router.candidates(self._router.shard_index_for_key(key))

    async def probe(self, address: str) -> NodeProbe:
        """Whether ``address`` answers /ping, and its /status snapshot."""
        return await self._run(self._engine.probe(address))

    async def probe_all(self, addresses: Sequence[str] | None = None) -> list[NodeProbe]:
        """`probe` each address concurrently (default: every node of the view)."""
        if addresses is None:
            addresses = list((await self.view()).all_addresses())
        return await self._run(self._engine.probe_all(list(addresses)))

    async def set_view(
        self, view: Mapping[str, Any] | list[Any], via: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Install ``view``; returns once the nodes serve it. See `Client.set_view`."""
        targets = list(via) if via is not None else view_addresses(view)
        return await self._run(self._engine.set_view(view, targets))

    # -- lifecycle ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the driver -----------------------------------------------------------------------------

    async def _run(self, program: Program[T]) -> T:
        """Run a program to completion, performing its effects with asyncio I/O."""
        try:
            effect = next(program)
            while True:
                effect = program.send(await self._perform(effect))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, HttpRequest):
            started = time.perf_counter()
            try:
                response = await self._http.request(
                    effect.method,
                    url_of(effect),
                    headers=self._headers(effect),
                    content=effect.body,
                    extensions=timeouts_of(effect, self._settings),
                )
            except TRANSPORT_ERRORS as error:
                return failure_from(error, effect)
            return response_from(response, time.perf_counter() - started)
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, Gather):
            return list(
                await asyncio.gather(*(self._run_captured(program) for program in effect.programs))
            )
        raise TypeError(f"unknown effect {effect!r}")

    async def _run_captured(self, program: Program[Any]) -> GatherResult:
        try:
            return GatherResult(value=await self._run(program))
        except Exception as error:
            return GatherResult(error=error)
