"""Where requests go: the client's copy of the view and what it knows of node health.

Theory of operation
===================

The router holds the last view a node gave the client (``GET /view``) and maps
each key to the replicas of its shard with the same consistent-hash ring the
nodes use, so a request reaches an owner directly instead of being forwarded.

Each shard has a *preferred* replica, drawn at random when the view is learned
(which spreads clients over replicas) and kept while it works: staying on one
replica means the replica already holds everything the session wrote there, so
reads rarely wait for causal dependencies. A node that fails is *down* for
``node_down_s``: it is tried only after the others, and the shard's preference
moves to the next replica.

The view is re-read when it may be stale: never learned, marked stale (a node
said it is not in the view, or every replica of a shard failed), older than
``view_refresh_interval_s``, or a response carried causal metadata from a newer
view epoch than the client has seen so far (a view change happened).

The router does no I/O; time comes from an injected clock and choices from an
injected ``random.Random``, so tests can drive it deterministically.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Sequence

from causalkv.client.errors import BadRequest
from causalkv.client.settings import ClientSettings
from causalkv.core.view import View, ViewError, validate_address

NODES_MAX = 1024


def parse_addresses(nodes: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a node list: ``"a:1,b:2"`` or ``["http://a:1/", "b:2"]`` → ``("a:1", "b:2")``.

    Raises `BadRequest` for an empty list or an address that is not ``host:port``.
    """
    items = nodes.replace(",", " ").split() if isinstance(nodes, str) else list(nodes)
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise BadRequest(f"node addresses are strings, got {item!r}"[:200])
        address = item.strip()
        for scheme in ("http://", "https://"):
            if address.startswith(scheme):
                address = address[len(scheme) :]
        address = address.rstrip("/")
        if not address:
            continue
        try:
            validate_address(address)
        except ViewError as error:
            raise BadRequest(str(error)) from error
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BadRequest("give at least one node address (host:port)")
    if len(addresses) > NODES_MAX:
        raise BadRequest(f"at most {NODES_MAX} node addresses")
    return tuple(addresses)


class Router:
    """The client's view of the cluster: placement, replica preference, node health."""

    def __init__(
        self,
        seeds: Sequence[str],
        settings: ClientSettings,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.seeds = tuple(seeds)
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.view: View | None = None
        self.view_source: str | None = None
        """Address of the node the current view came from."""
        self.generation = 0
        """Number of views installed so far; lets concurrent operations skip duplicate refreshes."""
        self._learned_at_s = float("-inf")
        self._epoch_known = 0
        self._epoch_calibrated = False
        self._stale = False
        self._down_until_s: dict[str, float] = {}
        self._preferred: dict[str, str] = {}

    # -- the view -------------------------------------------------------------------------------

    def needs_refresh(self) -> bool:
        """True if the view should be (re)read before the next request."""
        if self.view is None or self._stale:
            return True
        return self._clock() - self._learned_at_s >= self.settings.view_refresh_interval_s

    def install(self, view: View, source: str, epoch_evidence: int) -> None:
        """Use ``view`` (just read from ``source``) from now on."""
        with self._lock:
            preferred: dict[str, str] = {}
            for index, shard in enumerate(view.shards):
                replicas = view.replicas(index)
                kept = self._preferred.get(shard.name)
                preferred[shard.name] = kept if kept in replicas else self._rng.choice(replicas)
            self._preferred = preferred
            self.view = view
            self.view_source = source
            self.generation += 1
            self._learned_at_s = self._clock()
            self._epoch_known = max(self._epoch_known, epoch_evidence)
            # GET /view does not say its epoch; without evidence, the first response's
            # epoch is taken as the view's own instead of as a sign of a newer view.
            self._epoch_calibrated = self._epoch_known > 0
            self._stale = False

    def refresh_failed(self) -> None:
        """No node gave a view: keep the old one and wait a while before asking again."""
        with self._lock:
            self._learned_at_s = self._clock()
            self._stale = False

    def mark_stale(self) -> None:
        """Re-read the view before the next request."""
        self._stale = True

    def observe_epoch(self, epoch: int) -> None:
        """A response showed evidence of view ``epoch``; a newer one means the view changed."""
        if epoch > self._epoch_known:
            with self._lock:
                if epoch > self._epoch_known:
                    self._epoch_known = epoch
                    if self.view is not None and self._epoch_calibrated:
                        self._stale = True
                    self._epoch_calibrated = True

    def view_candidates(self) -> list[str]:
        """Nodes to ask for the view, most promising first, bounded in number."""
        now_s = self._clock()
        members = [] if self.view is None else list(self.view.all_addresses())
        self._rng.shuffle(members)
        up = [address for address in members if self._down_until_s.get(address, 0.0) <= now_s]
        down = sorted(
            (address for address in members if address not in up),
            key=lambda address: self._down_until_s.get(address, 0.0),
        )
        ordered: list[str] = []
        for address in [*up[: self.settings.view_probe_nodes_max], *self.seeds, *down]:
            if address not in ordered:
                ordered.append(address)
        limit = max(self.settings.view_probe_nodes_max, len(self.seeds))
        return ordered[:limit]

    # -- placement ------------------------------------------------------------------------------

    def shard_index_for_key(self, key: str) -> int:
        """Index of the shard that owns ``key`` in the current view."""
        assert self.view is not None, "the view must be learned before routing"
        return self.view.shard_index_for_key(key)

    def shard_index_by_name(self, name: str) -> int | None:
        """Index of the shard called ``name``, or ``None`` if the view has none."""
        if self.view is None:
            return None
        for index, shard in enumerate(self.view.shards):
            if shard.name == name:
                return index
        return None

    def candidates(self, shard_index: int) -> list[str]:
        """Replicas of a shard in the order to try them: preferred, then up, then down."""
        view = self.view
        assert view is not None, "the view must be learned before routing"
        replicas = view.replicas(shard_index)
        preferred = self._preferred.get(view.shards[shard_index].name)
        start = replicas.index(preferred) if preferred in replicas else 0
        rotated = [*replicas[start:], *replicas[:start]]
        if not self._down_until_s:
            return rotated
        now_s = self._clock()
        up = [address for address in rotated if self._down_until_s.get(address, 0.0) <= now_s]
        down = sorted(
            (address for address in rotated if self._down_until_s.get(address, 0.0) > now_s),
            key=lambda address: self._down_until_s[address],
        )
        return up + down

    # -- health ---------------------------------------------------------------------------------

    def node_failed(self, address: str) -> None:
        """``address`` did not answer: try it last for a while, prefer another replica."""
        with self._lock:
            self._down_until_s[address] = self._clock() + self.settings.node_down_s
            view = self.view
            if view is None:
                return
            shard_index = view.shard_index_of_node(address)
            if shard_index is None:
                return
            name = view.shards[shard_index].name
            if self._preferred.get(name) != address:
                return
            replicas = view.replicas(shard_index)
            position = replicas.index(address)
            now_s = self._clock()
            for step in range(1, len(replicas)):
                candidate = replicas[(position + step) % len(replicas)]
                if self._down_until_s.get(candidate, 0.0) <= now_s:
                    self._preferred[name] = candidate
                    return

    def node_answered(self, address: str) -> None:
        """``address`` answered: it is up again."""
        if address in self._down_until_s:
            with self._lock:
                self._down_until_s.pop(address, None)

    def is_down(self, address: str) -> bool:
        """True while ``address`` counts as down after a failure."""
        return self._down_until_s.get(address, 0.0) > self._clock()
