"""`Client`: the blocking client, a thin driver of the engine's programs over ``httpcore.ConnectionPool``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
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


class Client(ClientBase):
    """A blocking causalkv client with a causal session; safe to share between threads.

    ::

        with Client(["127.0.0.1:8081", "127.0.0.1:8082"]) as kv:
            kv["greeting"] = "hello"
            assert kv["greeting"] == "hello"     # read-your-writes, on any replica
            token = kv.session.export()          # continue the session elsewhere

    ``nodes`` are seed addresses (``"host:port"``, a list or a comma-separated
    string); the client learns the view from them and then talks to the
    replicas owning each key directly. ``session`` continues an existing
    session (a `Session`, an exported string or raw metadata). ``timeout_s``
    and ``retries`` override the matching `ClientSettings` fields.
    """

    _http: httpcore.ConnectionPool

    def _start_transport(self) -> None:
        self._http = httpcore.ConnectionPool(**self._pool_options())

    # -- keys -----------------------------------------------------------------------------------

    @overload
    def get(self, key: str) -> str: ...
    @overload
    def get(self, key: str, default: D) -> str | D: ...
    def get(self, key: str, default: Any = MISSING) -> Any:
        """The value of ``key``; ``default`` if given and the key has none, else `KeyNotFound`."""
        reading = self.fetch(key)
        if reading.value is not None:
            return reading.value
        if default is not MISSING:
            return default
        raise KeyNotFound(key)

    def fetch(self, key: str, *, siblings: bool = False) -> Reading:
        """Read ``key`` with details: value or ``None``, the node that served it, siblings."""
        return self._run(self._engine.fetch(key, siblings))

    def put(self, key: str, value: str) -> None:
        """Write ``value`` to ``key``; returns once a replica of the key's shard acknowledged it."""
        self._run(self._engine.put(key, value))

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it had a value, False if there was nothing to delete."""
        return self._run(self._engine.delete(key))

    def items(self, shard: str | None = None) -> dict[str, str]:
        """Every key and value of the cluster, or of one shard (by name)."""
        if shard is not None:
            return self._run(self._engine.list_shard(shard)).items
        merged: dict[str, str] = {}
        for listing in self.listings():
            merged.update(listing.items)
        return merged

    def keys(self, shard: str | None = None) -> list[str]:
        """Every key, sorted; of one shard if ``shard`` is given."""
        return sorted(self.items(shard))

    def listings(self) -> list[ShardListing]:
        """One `ShardListing` per shard: its items and the replica that listed them."""
        return self._run(self._engine.list_all())

    def __getitem__(self, key: str) -> str:
        return self.get(key)

    def __setitem__(self, key: str, value: str) -> None:
        self.put(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFound(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.fetch(key).found

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # -- the cluster ----------------------------------------------------------------------------

    def view(self, *, refresh: bool = False) -> View:
        """The view the client routes by (read from a node first if ``refresh`` or stale)."""
        if refresh:
            return self._run(self._engine.refresh_view(force=True))
        return self._run(self._engine.ensure_view())

    def shard_for(self, key: str) -> str:
        """Name of the shard that owns ``key``."""
        view = self.view()
        return view.shards[view.shard_index_for_key(key)].name

    def replicas_for(self, key: str) -> list[str]:
        """Replicas of ``key``'s shard, in the order the client will try them."""
        self.view()
        return self._router.candidates(self._router.shard_index_for_key(key))

    def probe(self, address: str) -> NodeProbe:
        """Whether ``address`` answers /ping, and its /status snapshot."""
        return self._run(self._engine.probe(address))

    def probe_all(self, addresses: Sequence[str] | None = None) -> list[NodeProbe]:
        """`probe` each address (default: every node of the view)."""
        if addresses is None:
            addresses = list(self.view().all_addresses())
        return self._run(self._engine.probe_all(list(addresses)))

    def set_view(
        self, view: Mapping[str, Any] | list[Any], via: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Install ``view`` (``{shard: [{"address", "id"}]}``); returns once nodes serve it.

        ``via``: nodes to send ``PUT /view`` to, first reachable wins (default:
        the new view's nodes). Sends the cluster secret if one is set.
        """
        targets = list(via) if via is not None else view_addresses(view)
        return self._run(self._engine.set_view(view, targets))

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the driver -----------------------------------------------------------------------------

    def _run(self, program: Program[T]) -> T:
        """Run a program to completion, performing its effects with blocking I/O."""
        try:
            effect = next(program)
            while True:
                effect = program.send(self._perform(effect))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, HttpRequest):
            started = time.perf_counter()
            try:
                response = self._http.request(
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
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Gather):
            return [self._run_captured(program) for program in effect.programs]
        raise TypeError(f"unknown effect {effect!r}")

    def _run_captured(self, program: Program[Any]) -> GatherResult:
        try:
            return GatherResult(value=self._run(program))
        except Exception as error:
            return GatherResult(error=error)
