"""One simulated run (one seed): draw the scenario, run the phases, judge.

Phases
------
1. **Safety phase** (``duration_s`` of virtual time). Every node starts; the
   operator installs a first view; clients run their workload while the
   nemesis injects the faults the seed drew (partitions, crashes, restarts,
   view changes) on top of the seed's network (latency, loss, duplication,
   reordering) and disk (fsync delay).
2. **Healed phase**. The nemesis stops, partitions heal, loss, duplication
   and reordering stop, every node that is down restarts; clients issue no new
   operations and no new view is proposed. Within ``converge_timeout_s`` of
   virtual time every requirement of convergence must hold: all requests
   answered; every node that has a view serves the highest committed one; no
   node has a view change or a hand-off in progress; the replicas of each
   shard hold the same visible key -> value map. (Liveness.)
3. **Session reads**: every client lists every member of the final view
   with its own session token. Each must succeed: once the cluster has
   healed, every dependency a session can hold is available, so a causal
   wait that times out here is a liveness bug (e.g. a replica whose clock
   never covers what it holds, or a write lost for good).
4. **Final reads**: one list per member of the final view, with a fresh
   session, marked ``final`` with its ``shard`` and ``covers`` (every key of
   the workload its shard owns).
5. **Judgement**: the history checker (``causalkv.check.check_history``)
   judges the whole history (causal consistency, convergence of final reads,
   no lost acknowledged write), plus the simulator's own invariants
   (``invariants.py``).

A seed fails if the checker finds a violation, the replicas do not converge
in time, a session read or a final read fails, the core raises (fail-stop: a core exception is
a bug), or an invariant breaks. The run halts at the first core exception or
invariant violation, so the end of the trace is where it happened.

Randomness: one ``random.Random(seed)`` draws the sub-seeds of separate
streams (scenario, network, nodes, workload, nemesis) in a fixed order, so
turning a fault kind off (``--no-crashes``) leaves the other draws alone,
which makes failing seeds easier to shrink by hand.
"""

from __future__ import annotations

import random
import shlex
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from causalkv.check import HistoryRecorder, MalformedHistoryError, check_history
from causalkv.core.base import ReplicaSettings
from causalkv.core.keystore import winner_of
from causalkv.core.replica import Replica
from causalkv.core.view import View
from causalkv.sim.disk import DiskProfile
from causalkv.sim.faults import PARTITION_KINDS, FaultProfile, Nemesis
from causalkv.sim.invariants import Invariants
from causalkv.sim.loop import EventLoop, Process, Task
from causalkv.sim.mutants import MUTANTS
from causalkv.sim.network import Network, NetworkProfile
from causalkv.sim.node import SimNode
from causalkv.sim.trace import Trace
from causalkv.sim.views import ViewAdmin, describe_view, random_view
from causalkv.sim.workload import Client, ClientStatistics, WorkloadProfile, final_list, key_space

DEFAULT_CONVERGE_TIMEOUT_S = 60.0
ADMIN_TIMEOUT_S = 65.0
FINAL_READ_TIMEOUT_S = 10.0
FINAL_READ_ATTEMPTS = 3
SESSION_READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SimOptions:
    """What the command line controls. ``None`` means "drawn from the seed"."""

    seed: int
    nodes: int | None = None
    shards: int | None = None
    """Most shards a view may have."""
    clients: int | None = None
    keys: int | None = None
    duration_s: float | None = None
    partitions: bool = True
    crashes: bool = True
    view_changes: bool = True
    network_faults: bool = True
    converge_timeout_s: float = DEFAULT_CONVERGE_TIMEOUT_S
    mutant: str | None = None

    def with_seed(self, seed: int) -> SimOptions:
        return SimOptions(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "seed": seed})

    def option_arguments(self) -> list[str]:
        """The command-line options that differ from the defaults (seed excluded)."""
        arguments: list[str] = []
        if self.nodes is not None:
            arguments += ["--nodes", str(self.nodes)]
        if self.shards is not None:
            arguments += ["--shards", str(self.shards)]
        if self.clients is not None:
            arguments += ["--clients", str(self.clients)]
        if self.keys is not None:
            arguments += ["--keys", str(self.keys)]
        if self.duration_s is not None:
            arguments += ["--duration", f"{self.duration_s:g}"]
        if not self.partitions:
            arguments.append("--no-partitions")
        if not self.crashes:
            arguments.append("--no-crashes")
        if not self.view_changes:
            arguments.append("--no-view-changes")
        if not self.network_faults:
            arguments.append("--no-network-faults")
        if self.converge_timeout_s != DEFAULT_CONVERGE_TIMEOUT_S:
            arguments += ["--converge-timeout", f"{self.converge_timeout_s:g}"]
        if self.mutant is not None:
            arguments += ["--mutant", self.mutant]
        return arguments

    def replay_command(self) -> str:
        return shlex.join(["causalkv", "sim", "--seed", str(self.seed), *self.option_arguments()])

    @classmethod
    def from_command(cls, command: str) -> SimOptions:
        """Parse a replay command (as printed by ``replay_command``; a leading
        ``causalkv sim`` is optional, ``#`` starts a comment)."""
        words = shlex.split(command, comments=True)
        if words[:2] == ["causalkv", "sim"]:
            words = words[2:]
        values: dict[str, object] = {}
        flags = {
            "--no-partitions": ("partitions", False),
            "--no-crashes": ("crashes", False),
            "--no-view-changes": ("view_changes", False),
            "--no-network-faults": ("network_faults", False),
        }
        numbers: dict[str, tuple[str, type[int] | type[float]]] = {
            "--seed": ("seed", int),
            "--nodes": ("nodes", int),
            "--shards": ("shards", int),
            "--clients": ("clients", int),
            "--keys": ("keys", int),
            "--duration": ("duration_s", float),
            "--converge-timeout": ("converge_timeout_s", float),
        }
        position = 0
        while position < len(words):
            word = words[position]
            if word in flags:
                name, flag = flags[word]
                values[name] = flag
                position += 1
            elif word in numbers and position + 1 < len(words):
                name, kind = numbers[word]
                values[name] = kind(words[position + 1])
                position += 2
            elif word == "--mutant" and position + 1 < len(words):
                values["mutant"] = words[position + 1]
                position += 2
            else:
                raise ValueError(f"cannot parse {word!r} in {command!r}")
        if "seed" not in values:
            raise ValueError(f"no --seed in {command!r}")
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Scenario:
    """Everything a seed drew."""

    nodes: int
    max_shards: int
    duration_s: float
    network: NetworkProfile
    disk: DiskProfile
    workload: WorkloadProfile
    faults: FaultProfile
    initial_targets: int

    def describe(self) -> str:
        return (
            f"{self.nodes} nodes, <={self.max_shards} shards, {self.duration_s:.1f}s;"
            f" {self.workload.describe()}; network {self.network.describe()};"
            f" disk {self.disk.describe()}; {self.faults.describe()}"
        )


def draw_scenario(rng: random.Random, options: SimOptions) -> Scenario:
    """Draw every parameter (always all of them, then apply the options, so an
    option changes only what it names)."""
    nodes = rng.choice((1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9))
    max_shards = rng.randint(1, 4)
    clients = rng.randint(1, 6)
    keys = rng.choice((2, 4, 6, 8, 12, 20, 30))
    duration_s = rng.uniform(6.0, 25.0)
    latency_min = rng.choice((0.0002, 0.001, 0.004))
    network = NetworkProfile(
        latency_min_s=latency_min,
        latency_max_s=latency_min * rng.choice((1.5, 4.0, 10.0, 40.0)),
        slow_probability=rng.choice((0.0, 0.0, 0.01, 0.05)),
        slow_factor_max=rng.choice((10.0, 50.0, 200.0)),
    )
    drop = rng.choice((0.0, 0.0, 0.01, 0.05, 0.2))
    duplicate = rng.choice((0.0, 0.0, 0.02, 0.1))
    reorder = rng.choice((0.0, 0.0, 0.05, 0.2))
    reorder_delay = rng.choice((0.05, 0.5, 2.0))
    if options.network_faults:
        network.drop_rate = drop
        network.duplicate_rate = duplicate
        network.reorder_rate = reorder
        network.reorder_delay_max_s = reorder_delay
    fsync_min = rng.choice((0.0001, 0.0005, 0.002))
    disk = DiskProfile(
        fsync_min_s=fsync_min,
        fsync_max_s=fsync_min * rng.choice((2.0, 10.0, 50.0)),
        slow_probability=rng.choice((0.0, 0.01, 0.05)),
        slow_max_s=rng.choice((0.05, 0.3, 1.0)),
    )
    workload = WorkloadProfile(
        clients=clients,
        keys=keys,
        weights=(
            rng.uniform(0.1, 1.0),
            rng.uniform(0.1, 1.0),
            rng.uniform(0.0, 0.4),
            rng.uniform(0.0, 0.6),
        ),
        think_min_s=0.0,
        think_max_s=rng.choice((0.005, 0.05, 0.2, 0.5)),
        client_timeout_s=rng.choice((1.0, 3.0, 10.0, 30.0)),
        stickiness=rng.choice((0.0, 0.5, 0.9, 1.0)),
    )
    kinds = tuple(kind for kind in PARTITION_KINDS if rng.random() < 0.6) or ("halves",)
    partitions = rng.random() < 0.7
    crashes = rng.random() < 0.6
    view_changes = rng.random() < 0.6
    faults = FaultProfile(
        partitions=partitions and options.partitions,
        partition_interval_s=rng.uniform(0.5, 6.0),
        partition_duration_max_s=rng.uniform(0.3, 8.0),
        partition_kinds=kinds,
        crashes=crashes and options.crashes,
        crash_interval_s=rng.uniform(0.5, 8.0),
        downtime_max_s=rng.uniform(0.2, 8.0),
        clean_restart_probability=rng.choice((0.0, 0.3, 0.7)),
        max_down=1,
        view_changes=view_changes and options.view_changes,
        view_change_interval_s=rng.uniform(1.5, 10.0),
        several_targets_probability=0.25,
        concurrent_views_probability=0.12,
    )
    initial_targets = rng.choice((1, 1, 1, 2, 3))
    if options.nodes is not None:
        nodes = options.nodes
    if options.shards is not None:
        max_shards = options.shards
    if options.clients is not None:
        workload.clients = options.clients
    if options.keys is not None:
        workload.keys = options.keys
    if options.duration_s is not None:
        duration_s = options.duration_s
    max_shards = max(1, min(max_shards, nodes))
    faults.max_shards = max_shards
    faults.max_down = max(1, (nodes - 1) // 2) if nodes > 2 else 1
    return Scenario(nodes, max_shards, duration_s, network, disk, workload, faults, initial_targets)


@dataclass
class SimResult:
    options: SimOptions
    ok: bool
    failure: str | None = None
    """Kind of failure: checker, liveness, final-read, core-exception, invariant, simulator."""
    message: str = ""
    details: str = ""
    trace_tail: list[str] = field(default_factory=list)
    digest: str = ""
    scenario: str = ""
    statistics: dict[str, int | float] = field(default_factory=dict)
    cpu_s: float = 0.0

    @property
    def seed(self) -> int:
        return self.options.seed

    def summary_line(self) -> str:
        status = "ok" if self.ok else f"FAIL {self.failure}: {self.message}"
        return f"seed {self.seed}: {status}"


class Simulation:
    def __init__(
        self,
        options: SimOptions,
        *,
        echo: object = None,
        history_path: Path | None = None,
        replica_class: type[Replica] | None = None,
    ) -> None:
        self.options = options
        self.loop = EventLoop()
        self.loop.on_runaway = self._runaway
        self.trace = Trace(self.loop, echo if callable(echo) else None)
        self.history_path = history_path
        if replica_class is None:
            replica_class = Replica if options.mutant is None else MUTANTS[options.mutant]
        self.replica_class = replica_class
        self._failure: tuple[str, str, str] | None = None
        self._processes: list[Process] = []

    # -- failures --------------------------------------------------------------------------------

    def _fail(self, kind: str, message: str, details: str = "") -> None:
        if self._failure is None:
            self._failure = (kind, message, details)
        self.loop.halt(message)

    def _runaway(self, reason: str) -> None:
        self._fail("runaway", reason, "a message storm: see the last trace lines")

    def _core_failure(self, node: SimNode, text: str) -> None:
        last = text.strip().splitlines()[-1] if text.strip() else "exception"
        self._fail("core-exception", f"core raised on {node.address}: {last}", text)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> SimResult:
        started = time.process_time()
        try:
            result = self._run()
        finally:
            self._shutdown()
            self.recorder_close()
        result.cpu_s = time.process_time() - started
        return result

    def _shutdown(self) -> None:
        """Close every coroutine still alive (tasks that never got to run included)."""
        for process in self._processes:
            process.kill()
        for node in getattr(self, "nodes", []):
            if node.alive:
                node.crash()

    def recorder_close(self) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            recorder.close()

    def _build(self) -> None:
        options = self.options
        master = random.Random(options.seed)
        scenario_rng = random.Random(master.getrandbits(64))
        network_rng = random.Random(master.getrandbits(64))
        node_rng = random.Random(master.getrandbits(64))
        workload_rng = random.Random(master.getrandbits(64))
        nemesis_rng = random.Random(master.getrandbits(64))
        self.scenario = scenario = draw_scenario(scenario_rng, options)
        self.network = Network(self.loop, network_rng, scenario.network, self.trace)
        self.invariants = Invariants(lambda message: self._fail("invariant", message))
        self.keyspace = key_space(scenario.workload.keys)
        settings = ReplicaSettings()
        self.nodes: list[SimNode] = []
        for index in range(1, scenario.nodes + 1):
            node = SimNode(
                f"n{index}:7000",
                str(index),
                loop=self.loop,
                rng=random.Random(node_rng.getrandbits(64)),
                network=self.network,
                trace=self.trace,
                settings=settings,
                disk_profile=scenario.disk,
                keyspace=self.keyspace,
                invariants=self.invariants,
                replica_class=self.replica_class,
                on_core_failure=self._core_failure,
            )
            self.nodes.append(node)
            self.network.hosts[node.address] = node
        self.recorder = HistoryRecorder(
            self.history_path, keep_lines=True, clock=lambda: self.loop.now, flush_every_line=False
        )
        self.admin = ViewAdmin(self.loop, self.network, self.trace, ADMIN_TIMEOUT_S)
        self.nemesis = Nemesis(
            loop=self.loop,
            rng=nemesis_rng,
            network=self.network,
            nodes=self.nodes,
            trace=self.trace,
            profile=scenario.faults,
            admin=self.admin,
        )
        self.client_statistics = ClientStatistics()
        self.client_process = Process(self.loop, "clients")
        self._processes += [self.client_process, self.admin.process, self.nemesis.process]
        self.client_process.on_task_error = lambda task, error: self._fail(
            "simulator", f"client task {task.name} raised {error!r}", _format(error)
        )
        self.admin.process.on_task_error = lambda task, error: self._fail(
            "simulator", f"admin task raised {error!r}", _format(error)
        )
        self.nemesis.process.on_task_error = lambda task, error: self._fail(
            "simulator", f"nemesis task {task.name} raised {error!r}", _format(error)
        )
        self.clients = [
            Client(
                f"p{index}",
                loop=self.loop,
                rng=random.Random(workload_rng.getrandbits(64)),
                network=self.network,
                nodes=self.nodes,
                recorder=self.recorder,
                profile=scenario.workload,
                keyspace=self.keyspace,
                trace=self.trace,
                invariants=self.invariants,
                statistics=self.client_statistics,
            )
            for index in range(1, scenario.workload.clients + 1)
        ]
        self._initial_view = random_view(
            scenario_rng, self.nodes, scenario.max_shards, min_members=(scenario.nodes + 1) // 2
        )
        self._initial_targets = scenario_rng.sample(
            self.nodes, min(scenario.initial_targets, scenario.nodes)
        )
        self._client_starts = [scenario_rng.uniform(0.0, 0.5) for _ in self.clients]
        self._install_rng = random.Random(scenario_rng.getrandbits(64))

    def _run(self) -> SimResult:
        self._build()
        scenario = self.scenario
        trace = self.trace
        trace.record("sim", f"seed {self.options.seed}: {scenario.describe()}")
        if self.options.mutant is not None:
            trace.record("sim", f"MUTANT core: {self.options.mutant}")
        for node in self.nodes:
            node.start()
        self.admin.install(
            self._initial_targets,
            self._initial_view,
            self.nodes,
            self._install_rng,
            scenario.duration_s,
        )
        safety_end = scenario.duration_s
        stopping = False

        def is_stopping() -> bool:
            return stopping

        for client, start in zip(self.clients, self._client_starts, strict=True):
            self.client_process.spawn(self._client_run(client, start, safety_end, is_stopping))
        self.nemesis.start(safety_end)

        # 1. Safety phase.
        if not self.loop.run_until(safety_end):
            return self._result()

        # 2. Healed phase.
        stopping = True
        self.nemesis.stop()
        self.network.heal_all()
        self.network.profile = scenario.network.healed()
        trace.record("sim", "HEAL: network healed, restarting nodes that are down")
        for node in self.nodes:
            if not node.alive:
                node.start()
        if self._failure is not None:
            return self._result()
        heal_time = self.loop.now
        deadline = heal_time + self.options.converge_timeout_s
        problems = self._convergence_problems()
        next_report = heal_time + 5.0
        while problems and self.loop.now < deadline:
            if not self.loop.run_until(min(deadline, self.loop.now + 0.25)):
                return self._result()
            problems = self._convergence_problems()
            if problems and self.loop.now >= next_report:
                next_report += 5.0
                more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
                trace.record("sim", f"not converged yet: {problems[0]}{more}")
        if problems:
            self._fail(
                "liveness",
                f"not converged {self.options.converge_timeout_s:g}s after healing: {problems[0]}",
                "\n".join(problems) + self._interim_verdict(),
            )
            return self._result()
        converged_after = self.loop.now - heal_time
        trace.record("sim", f"CONVERGED {converged_after:.2f}s after healing")
        self.converged_after_s = converged_after
        final_view = self._final_view()
        session_errors: list[str] = []
        if final_view is None:
            trace.record("sim", "no view was ever committed: no session or final reads")
        else:
            # 3. Session reads: every client lists every member with its token.
            session_errors = self._session_reads(final_view)
            if self._failure is not None:
                return self._result()

            # 4. Final reads.
            errors: list[str] = []
            finals = self._final_reads(final_view, errors)

            def done() -> bool:
                return all(task.future.done() for task in finals)

            self.loop.run_until(
                self.loop.now + FINAL_READ_ATTEMPTS * (FINAL_READ_TIMEOUT_S + 1.0), done
            )
            if self._failure is not None:
                return self._result()
            if errors or not done():
                self._fail("final-read", errors[0] if errors else "final reads did not complete")
                return self._result()

        # 5. Judgement.
        for node in self.nodes:
            self.invariants.check_known(node.address, node.replica.known)
        if self._failure is not None:
            return self._result()
        try:
            history = self.recorder.history()
        except MalformedHistoryError as error:
            self._fail("simulator", f"malformed history: {error}")
            return self._result()
        verdict = check_history(history)
        liveness = "\n".join(session_errors)
        if not verdict.ok:
            counts = ", ".join(f"{kind} x{count}" for kind, count in verdict.counts.items())
            details = verdict.render(limit_per_kind=5)
            if session_errors:
                details += "\nalso, after healing:\n" + liveness
            self._fail("checker", f"checker: {counts}", details)
        elif session_errors:
            self._fail("liveness", session_errors[0], liveness)
        return self._result()

    def _interim_verdict(self) -> str:
        """The checker's opinion of the history so far (no final reads), for diagnosis."""
        try:
            verdict = check_history(self.recorder.history())
        except MalformedHistoryError as error:
            return f"\n\nthe history so far is malformed: {error}"
        if verdict.ok:
            return "\n\nthe checker finds no violation in the history so far"
        return "\n\nthe checker on the history so far:\n" + verdict.render(limit_per_kind=5)

    async def _client_run(
        self, client: Client, start_s: float, until_s: float, stopping: Callable[[], bool]
    ) -> None:
        await self.loop.sleep(start_s)
        await client.run(until_s, stopping)

    # -- convergence -----------------------------------------------------------------------------

    def _final_view(self) -> View | None:
        views = [node.replica.view for node in self.nodes if node.alive]
        installed = [view for view in views if view is not None]
        if not installed:
            return None
        return max(installed, key=lambda view: view.proposal_key)

    def _convergence_problems(self) -> list[str]:
        problems: list[str] = []
        busy_clients = [client.name for client in self.clients if client.busy]
        if busy_clients:
            problems.append(f"clients still waiting: {', '.join(busy_clients)}")
        if self.network.requests_in_flight:
            # A write its client gave up on may still land: final reads taken
            # before it would disagree with those taken after.
            problems.append(f"{self.network.requests_in_flight} requests still in flight")
        for node in self.nodes:
            if not node.alive:
                problems.append(f"{node.address} is down")
            elif node.active_requests:
                problems.append(f"{node.address} still serves {node.active_requests} requests")
        if problems:
            return problems
        final = self._final_view()
        if final is None:
            # No view was ever committed (e.g. every PUT /view failed with its
            # coordinator, which the operator may retry): nothing to converge,
            # as long as no change is still under way.
            return [
                f"{node.address} has a pending change to {describe_view(node.replica.change.proposal)}"
                for node in self.nodes
                if node.replica.change is not None
            ]
        for node in self.nodes:
            replica = node.replica
            view = replica.view
            stale = view is not None and view.proposal_key != final.proposal_key
            if stale and (final.contains(node.address) or view.contains(node.address)):  # type: ignore[union-attr]
                # A member of the final view that does not serve it, or a node
                # that still believes itself a member of an older view (it would
                # serve it). A non-member that merely remembers an older view it
                # was not a member of (e.g. it coordinated it) serves nothing.
                problems.append(
                    f"{node.address} serves {describe_view(view)}, not {describe_view(final)}"
                )
            elif view is None and final.contains(node.address):
                problems.append(f"{node.address} has no view but is in {describe_view(final)}")
            if replica.change is not None:
                problems.append(
                    f"{node.address} has a pending change to {describe_view(replica.change.proposal)}"
                )
            proposing = [c for c in replica.coordinations.values() if c.committed_s is None]
            if proposing:
                # A PUT /view still being coordinated (re-proposed after losing a
                # race, say) would change the view under the final reads.
                problems.append(
                    f"{node.address} still coordinates {describe_view(proposing[0].proposal)}"
                )
            unacked = sorted(t.destination for t in replica.outgoing.values() if not t.acked)
            if unacked:
                problems.append(f"{node.address} has unacknowledged hand-offs to {unacked}")
        if problems:
            return problems
        for index, shard in enumerate(final.shards):
            maps: dict[str, dict[str, str]] = {}
            for address in final.replicas(index):
                replica = self._node(address).replica
                visible: dict[str, str] = {}
                for key, entry in replica.store.items():
                    if final.shard_index_for_key(key) != index:
                        continue
                    value = winner_of(entry).value
                    if value is not None:
                        visible[key] = value
                maps[address] = visible
            first_address, first = next(iter(maps.items()))
            for address, visible in maps.items():
                if visible != first:
                    differing = sorted(
                        key
                        for key in set(first) | set(visible)
                        if first.get(key) != visible.get(key)
                    )
                    shown = ", ".join(
                        f"{key}: {first.get(key)!r} vs {visible.get(key)!r}"
                        for key in differing[:5]
                    )
                    problems.append(
                        f"shard {shard.name}: {first_address} and {address} differ on"
                        f" {len(differing)} keys ({shown})"
                    )
        return problems

    def _session_reads(self, final: View) -> list[str]:
        """Run the session reads; returns what failed (judged after the checker ran)."""
        members = [self._node(address) for address in sorted(final.all_addresses())]
        timeout_s = SESSION_READ_TIMEOUT_S
        errors: list[str] = []

        async def reads(client: Client) -> None:
            error = await client.session_reads(members, timeout_s, FINAL_READ_ATTEMPTS)
            if error is not None:
                errors.append(error)

        tasks = [self.client_process.spawn(reads(client)) for client in self.clients]

        def done() -> bool:
            return all(task.future.done() for task in tasks)

        self.loop.run_until(
            self.loop.now + len(members) * FINAL_READ_ATTEMPTS * (timeout_s + 1.0), done
        )
        if self._failure is None and not done():
            self._fail("liveness", "session reads after healing did not complete")
        if not errors:
            self.trace.record("sim", "session reads ok")
        for error in errors:
            self.trace.record("sim", f"SESSION READ FAILED: {error}")
        return errors

    def _node(self, address: str) -> SimNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def _final_reads(self, final: View, errors: list[str]) -> list[Task[None]]:
        process = Process(self.loop, "final")
        self._processes.append(process)
        process.on_task_error = lambda task, error: self._fail(
            "simulator", f"final read raised {error!r}", _format(error)
        )
        tasks: list[Task[None]] = []
        for index, shard in enumerate(final.shards):
            covers = [key for key in self.keyspace if final.shard_index_for_key(key) == index]
            for address in sorted(final.replicas(index)):
                node = self._node(address)
                tasks.append(process.spawn(self._final_read(node, shard.name, covers, errors)))
        return tasks

    async def _final_read(
        self, node: SimNode, shard: str, covers: list[str], errors: list[str]
    ) -> None:
        error = await final_list(
            loop=self.loop,
            network=self.network,
            recorder=self.recorder,
            node=node,
            shard=shard,
            covers=covers,
            trace=self.trace,
            timeout_s=FINAL_READ_TIMEOUT_S,
            attempts=FINAL_READ_ATTEMPTS,
        )
        if error is not None:
            errors.append(error)

    # -- the result ------------------------------------------------------------------------------

    def _result(self) -> SimResult:
        loop = self.loop
        trace = self.trace
        statistics: dict[str, int | float] = {
            "events": loop.events_run,
            "virtual_s": round(loop.now, 6),
            "trace_lines": trace.line_count,
        }
        clients = getattr(self, "client_statistics", None)
        if clients is not None:
            statistics.update(
                operations=clients.invoked, ok=clients.ok, fail=clients.fail, info=clients.info
            )
        network = getattr(self, "network", None)
        if network is not None:
            statistics.update(network.statistics)
        nemesis = getattr(self, "nemesis", None)
        if nemesis is not None:
            statistics.update(nemesis.counts)
        admin = getattr(self, "admin", None)
        if admin is not None:
            statistics["view_proposals"] = admin.proposals
        converged = getattr(self, "converged_after_s", None)
        if converged is not None:
            statistics["converged_after_s"] = round(converged, 3)
        trace.absorb(repr(sorted(statistics.items())).encode())
        scenario = getattr(self, "scenario", None)
        if self._failure is None:
            return SimResult(
                self.options,
                True,
                digest=trace.hexdigest(),
                scenario="" if scenario is None else scenario.describe(),
                statistics=statistics,
            )
        kind, message, details = self._failure
        return SimResult(
            self.options,
            False,
            failure=kind,
            message=message,
            details=details,
            trace_tail=trace.tail(),
            digest=trace.hexdigest(),
            scenario="" if scenario is None else scenario.describe(),
            statistics=statistics,
        )


def _format(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))
