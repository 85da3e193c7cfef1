"""The nemesis: partitions, crashes, restarts and view changes during the safety phase.

Each kind of fault runs as its own task, at exponentially distributed
intervals whose means (and whether the kind is enabled at all) are drawn per
seed, so some seeds are calm and others chaotic:

* **Partitions** (one at a time): ``halves`` (a random bipartition, both
  directions), ``one-way`` (packets from one side to the other are
  dropped: that side cannot connect, and the other side's requests arrive
  but their replies are lost, so they time out), ``bridge`` (two halves that only one node talks to), ``isolate``
  (one node alone) and ``swizzle`` (nodes are cut off one by one, then
  reconnected one by one in another random order). Each lasts a random time.
* **Crashes**: a live node loses its process and whatever its disk had not
  made durable, and restarts later from its durable state (``Replica.restore``)
  as a fresh process; or it restarts cleanly (graceful stop). At most
  ``max_down`` nodes are down at once.
* **View changes** while clients run: a random new view (nodes added and
  removed, shards added, removed and renamed) proposed to one node, sometimes
  the same view to several nodes at once, occasionally two different views
  to two nodes concurrently.

Killing the nemesis process (when the healed phase starts) ends every fault
task at once; the simulation then heals the network and restarts every node
that is down.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from causalkv.sim.loop import EventLoop, Process
from causalkv.sim.network import Network
from causalkv.sim.node import SimNode
from causalkv.sim.trace import Trace
from causalkv.sim.views import ViewAdmin, random_view

PARTITION_KINDS = ("halves", "one-way", "bridge", "isolate", "swizzle")


@dataclass
class FaultProfile:
    partitions: bool = False
    partition_interval_s: float = 4.0
    partition_duration_max_s: float = 4.0
    partition_kinds: tuple[str, ...] = PARTITION_KINDS
    crashes: bool = False
    crash_interval_s: float = 5.0
    downtime_max_s: float = 4.0
    clean_restart_probability: float = 0.3
    max_down: int = 1
    view_changes: bool = False
    view_change_interval_s: float = 6.0
    several_targets_probability: float = 0.25
    concurrent_views_probability: float = 0.1
    max_shards: int = 2

    def describe(self) -> str:
        parts: list[str] = []
        if self.partitions:
            parts.append(
                f"partitions every ~{self.partition_interval_s:.1f}s"
                f" (<{self.partition_duration_max_s:.1f}s; {','.join(self.partition_kinds)})"
            )
        if self.crashes:
            parts.append(
                f"crashes every ~{self.crash_interval_s:.1f}s (down <{self.downtime_max_s:.1f}s,"
                f" clean {self.clean_restart_probability:.0%}, max {self.max_down} down)"
            )
        if self.view_changes:
            parts.append(f"view changes every ~{self.view_change_interval_s:.1f}s")
        return "; ".join(parts) or "no faults"


class Nemesis:
    def __init__(
        self,
        *,
        loop: EventLoop,
        rng: random.Random,
        network: Network,
        nodes: Sequence[SimNode],
        trace: Trace,
        profile: FaultProfile,
        admin: ViewAdmin,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.network = network
        self.nodes = list(nodes)
        self.addresses = [node.address for node in self.nodes]
        self.trace = trace
        self.profile = profile
        self.admin = admin
        self.process = Process(loop, "nemesis")
        self.counts: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def start(self, until_s: float) -> None:
        profile = self.profile
        if profile.partitions and len(self.nodes) > 1:
            self.process.spawn(self._partitions(until_s), "partitions")
        if profile.crashes:
            self.process.spawn(self._crashes(until_s), "crashes")
        if profile.view_changes:
            self.process.spawn(self._view_changes(until_s), "view-changes")

    def stop(self) -> None:
        self.process.kill()

    async def _pause(self, mean_s: float) -> None:
        await self.loop.sleep(self.rng.expovariate(1.0 / mean_s))

    # -- partitions ----------------------------------------------------------------------------------

    def _split(self, addresses: list[str]) -> tuple[list[str], list[str]]:
        shuffled = list(addresses)
        self.rng.shuffle(shuffled)
        cut = self.rng.randint(1, len(shuffled) - 1)
        return sorted(shuffled[:cut]), sorted(shuffled[cut:])

    @staticmethod
    def _between(
        left: list[str], right: list[str], both: bool = True
    ) -> frozenset[tuple[str, str]]:
        links = {(a, b) for a in left for b in right}
        if both:
            links.update((b, a) for a in left for b in right)
        return frozenset(links)

    def _isolation(self, address: str) -> frozenset[tuple[str, str]]:
        others = [a for a in self.addresses if a != address]
        return self._between([address], others)

    async def _partitions(self, until_s: float) -> None:
        profile = self.profile
        rng = self.rng
        while True:
            await self._pause(profile.partition_interval_s)
            if self.loop.now >= until_s:
                return
            kind = rng.choice(profile.partition_kinds)
            if kind == "bridge" and len(self.addresses) < 3:
                kind = "halves"
            self._count(f"partition:{kind}")
            duration = rng.uniform(0.1, profile.partition_duration_max_s)
            if kind == "swizzle":
                await self._swizzle(duration)
                continue
            if kind == "halves":
                left, right = self._split(self.addresses)
                links = self._between(left, right)
                what = f"halves {left} | {right}"
            elif kind == "one-way":
                left, right = self._split(self.addresses)
                links = self._between(left, right, both=False)
                what = f"one-way {left} -/-> {right}"
            elif kind == "bridge":
                shuffled = list(self.addresses)
                rng.shuffle(shuffled)
                bridge, rest = shuffled[0], shuffled[1:]
                left, right = self._split(rest)
                links = self._between(left, right)
                what = f"bridge {left} | {right} via {bridge}"
            else:
                victim = rng.choice(self.addresses)
                links = self._isolation(victim)
                what = f"isolate {victim}"
            cut = self.network.cut(links)
            self.trace.record("nemesis", f"partition {what} for {duration:.2f}s")
            await self.loop.sleep(duration)
            self.network.heal(cut)
            self.trace.record("nemesis", f"heal {what}")

    async def _swizzle(self, duration: float) -> None:
        rng = self.rng
        order = list(self.addresses)
        rng.shuffle(order)
        victims = order[: rng.randint(1, len(order) - 1)]
        step = duration / (2 * len(victims))
        cuts: dict[str, int] = {}
        for victim in victims:
            cuts[victim] = self.network.cut(self._isolation(victim))
            self.trace.record("nemesis", f"swizzle: cut {victim}")
            await self.loop.sleep(step)
        rng.shuffle(victims)
        for victim in victims:
            self.network.heal(cuts[victim])
            self.trace.record("nemesis", f"swizzle: heal {victim}")
            await self.loop.sleep(step)

    # -- crashes -------------------------------------------------------------------------------------

    async def _crashes(self, until_s: float) -> None:
        profile = self.profile
        rng = self.rng
        while True:
            await self._pause(profile.crash_interval_s)
            if self.loop.now >= until_s:
                return
            up = [node for node in self.nodes if node.alive]
            down = len(self.nodes) - len(up)
            if not up or down >= profile.max_down:
                continue
            node = rng.choice(up)
            if rng.random() < profile.clean_restart_probability:
                node.stop()
                self._count("restart")
                delay = rng.uniform(0.01, 1.0)
                self.trace.record(node.address, f"STOP (graceful), restart in {delay:.2f}s")
            else:
                outcome = node.crash()
                self._count("crash")
                delay = rng.uniform(0.05, profile.downtime_max_s)
                self.trace.record(node.address, f"CRASH ({outcome}), restart in {delay:.2f}s")
            self.process.spawn(self._restart_later(node, delay), "restart")

    async def _restart_later(self, node: SimNode, delay_s: float) -> None:
        await self.loop.sleep(delay_s)
        if not node.alive:
            node.start()

    # -- view changes --------------------------------------------------------------------------------

    async def _view_changes(self, until_s: float) -> None:
        profile = self.profile
        rng = self.rng
        while True:
            await self._pause(profile.view_change_interval_s)
            if self.loop.now >= until_s:
                return
            draw = rng.random()
            # An operator changes the view through nodes that know the cluster.
            # Sending a view that names none of the cluster's nodes to a node that
            # never learned any view founds a separate cluster by definition (the
            # "orphan" case, documented in docs/testing.md), not a fault.
            informed = [node for node in self.nodes if _knows_a_view(node)]
            if not informed:
                continue
            if draw < profile.concurrent_views_probability and len(informed) > 1:
                self._count("views:concurrent")
                targets = rng.sample(informed, 2)
                for target in targets:
                    self.admin.propose(target, random_view(rng, self.nodes, profile.max_shards))
            elif draw < profile.concurrent_views_probability + profile.several_targets_probability:
                self._count("views:several")
                view = random_view(rng, self.nodes, profile.max_shards)
                for target in rng.sample(informed, rng.randint(1, len(informed))):
                    self.admin.propose(target, view)
            else:
                self._count("views:single")
                self.admin.propose(
                    rng.choice(informed), random_view(rng, self.nodes, profile.max_shards)
                )


def _knows_a_view(node: SimNode) -> bool:
    replica = node._replica  # None while the node is down: not a target then
    return replica is not None and (replica.view is not None or replica.highest_epoch > 0)
