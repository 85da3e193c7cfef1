"""Views for the simulated cluster, and the operator who proposes them.

``random_view`` draws a view over the run's node pool: a random subset of the
nodes (so views add and remove nodes), split into a random number of shards
with names drawn from a small pool (so views add, remove and rename shards,
which moves keys). ``ViewAdmin`` plays the operator: it sends ``PUT /view`` to
a node (through ``SimNode.serve_view_change``, i.e. ``Replica.propose_view``)
and records the answer in the trace. View changes are not part of the
history; they only move the data the history is about.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from causalkv.core.requests import ResultKind
from causalkv.core.view import View, parse_sharded_view
from causalkv.sim.loop import EventLoop, Process
from causalkv.sim.network import Network, NotDelivered, PeerUnavailable
from causalkv.sim.node import SimNode
from causalkv.sim.trace import Trace

SHARD_NAMES = ("s0", "s1", "s2", "s3", "s4", "s5")


def describe_view(view: View | None) -> str:
    if view is None:
        return "none"
    shards = " ".join(
        f"{shard.name}[{','.join(node.address.split(':')[0] for node in shard.nodes)}]"
        for shard in view.shards
    )
    return f"e{view.epoch} {shards}" if view.epoch else shards


def random_view(
    rng: random.Random, nodes: Sequence[SimNode], max_shards: int, min_members: int = 1
) -> View:
    """A random view over (a subset of) ``nodes`` with 1..``max_shards`` shards."""
    count = len(nodes)
    members = rng.randint(max(1, min(min_members, count)), count)
    chosen = rng.sample(list(nodes), members)
    shard_count = rng.randint(1, max(1, min(max_shards, members)))
    names = sorted(rng.sample(SHARD_NAMES, shard_count))
    layout: dict[str, list[dict[str, object]]] = {name: [] for name in names}
    for position, node in enumerate(chosen):
        name = names[position] if position < shard_count else rng.choice(names)
        layout[name].append({"address": node.address, "id": int(node.node_id)})
    return parse_sharded_view(layout)


class ViewAdmin:
    """The operator: sends ``PUT /view`` requests and logs the answers."""

    def __init__(self, loop: EventLoop, network: Network, trace: Trace, timeout_s: float) -> None:
        self.loop = loop
        self.network = network
        self.trace = trace
        self.timeout_s = timeout_s
        self.process = Process(loop, "admin")
        self.proposals = 0
        self.outcomes: dict[str, int] = {}

    def propose(self, target: SimNode, view: View) -> None:
        self.proposals += 1
        self.process.spawn(self._propose(target, view, self.proposals), "admin")

    def install(
        self,
        targets: Sequence[SimNode],
        view: View,
        nodes: Sequence[SimNode],
        rng: random.Random,
        until_s: float,
    ) -> None:
        """The first view: sent to ``targets`` at once; an operator whose every
        request failed (refused, reset, timed out) tries again on a random
        node, until one is answered or ``until_s`` (the end of the safety phase)."""
        self.process.spawn(self._install(list(targets), view, list(nodes), rng, until_s), "install")

    async def _install(
        self,
        targets: list[SimNode],
        view: View,
        nodes: list[SimNode],
        rng: random.Random,
        until_s: float,
    ) -> None:
        while self.loop.now < until_s:
            attempts = []
            for target in targets:
                self.proposals += 1
                attempts.append(
                    self.process.spawn(self._propose(target, view, self.proposals), "admin")
                )
            outcomes = [await attempt.future for attempt in attempts]
            if any(outcome not in ("refused", "unknown") for outcome in outcomes):
                return
            await self.loop.sleep(1.0)
            targets = [rng.choice(nodes)]

    async def _propose(self, target: SimNode, view: View, number: int) -> str:
        self.trace.record(
            "admin", f"PUT /view #{number} -> {target.address}: {describe_view(view)}"
        )
        try:
            result = await self.network.call(
                None, target.address, self.timeout_s, lambda: target.serve_view_change(view)
            )
        except NotDelivered as error:
            outcome = "refused"
            self.trace.record("admin", f"PUT /view #{number}: {error}")
        except PeerUnavailable as error:
            outcome = "unknown"
            self.trace.record("admin", f"PUT /view #{number}: {error}")
        else:
            outcome = result.kind.value
            self.trace.record("admin", f"PUT /view #{number}: {outcome} {result.detail}".rstrip())
            if result.kind not in (
                ResultKind.OK,
                ResultKind.VIEW_CONFLICT,
                ResultKind.VIEW_CHANGE_TIMEOUT,
                ResultKind.NO_VIEW,
            ):
                self.trace.record("admin", f"PUT /view #{number}: unexpected answer")
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome
