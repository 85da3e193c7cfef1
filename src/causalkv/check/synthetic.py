"""Synthetic histories from a sequentially consistent reference store.

Used by the property tests and by ``bench/check_speed.py``. Client processes
invoke random operations against one in-memory store; each operation takes
effect atomically when it completes, so every generated history is
linearizable, hence causally consistent, and must be accepted by the checker.

Faults are modelled on the client side:

* ``fail``: the operation had no effect (and a delete that finds no key fails);
* ``info``: the outcome is unknown; a write then takes effect right away,
  later (at a random later step, before the final reads), or never;
* at the end some operations may stay pending, with the same three fates.

Final reads (``final_reads``) list every shard from every node after all
lingering writes have landed, with ``covers`` and ``shard``, and get a few
keys, like a test harness does after healing the cluster.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from causalkv.check.format import Function
from causalkv.check.history import HistoryRecorder, Invocation


@dataclass(frozen=True, slots=True)
class Workload:
    """Shape of a synthetic history."""

    processes: int = 5
    keys: int = 10
    operations: int = 200
    """Number of invocations, final reads excluded."""
    shards: int = 2
    nodes: int = 3
    put_weight: float = 4.0
    get_weight: float = 4.0
    delete_weight: float = 1.0
    list_weight: float = 0.5
    fail_probability: float = 0.02
    info_probability: float = 0.05
    covers_probability: float = 0.5
    """Probability that a (non-final) list carries ``covers``."""
    pending_probability: float = 0.5
    """Probability that an operation in flight at the end stays pending."""
    final_reads: bool = True


@dataclass(slots=True)
class _Request:
    invocation: Invocation
    function: Function
    key: str | None
    value: str | None
    shard: int = -1


@dataclass(slots=True)
class _ReferenceStore:
    """The sequential store: a dict, plus writes whose effect is delayed."""

    values: dict[str, str] = field(default_factory=dict)
    lingering: list[_Request] = field(default_factory=list)

    def write(self, request: _Request) -> bool:
        """Apply a put or delete; a delete returns whether it found the key."""
        assert request.key is not None
        if request.function == "put":
            assert request.value is not None
            self.values[request.key] = request.value
            return True
        return self.values.pop(request.key, None) is not None


class _Generator:
    def __init__(self, workload: Workload, seed: int, recorder: HistoryRecorder) -> None:
        self.workload = workload
        self.random = random.Random(seed)
        self.recorder = recorder
        self.store = _ReferenceStore()
        self.keys = [f"k{index}" for index in range(workload.keys)]
        self.shard_keys = [self.keys[shard :: workload.shards] for shard in range(workload.shards)]
        self.nodes = [f"n{index + 1}" for index in range(workload.nodes)]
        self.step = 0
        self.counter = 0
        functions: list[Function] = ["put", "get", "delete", "list"]
        self.functions = functions
        self.weights = [
            workload.put_weight,
            workload.get_weight,
            workload.delete_weight,
            workload.list_weight,
        ]

    def now(self) -> float:
        self.step += 1
        return self.step * 0.001

    def run(self) -> None:
        processes = [f"p{index}" for index in range(self.workload.processes)]
        in_flight: dict[str, _Request] = {}
        invoked = 0
        while invoked < self.workload.operations:
            process = self.random.choice(processes)
            request = in_flight.pop(process, None)
            if request is None:
                in_flight[process] = self.invoke(process)
                invoked += 1
            else:
                self.complete(request)
            if self.store.lingering and self.random.random() < 0.05:
                self.land_lingering_write()
        for request in in_flight.values():
            if self.random.random() < self.workload.pending_probability:
                if request.function in ("put", "delete"):
                    self.decide_fate(request)
            else:
                self.complete(request)
        while self.store.lingering:
            self.land_lingering_write()
        if self.workload.final_reads:
            self.final_reads()

    def invoke(self, process: str) -> _Request:
        function = self.random.choices(self.functions, self.weights)[0]
        node = self.random.choice(self.nodes)
        if function == "list":
            shard = self.random.randrange(self.workload.shards)
            invocation = self.recorder.invoke(process, "list", None, None, node, self.now())
            return _Request(invocation, function, None, None, shard)
        key = self.random.choice(self.keys)
        value = None
        if function == "put":
            self.counter += 1
            value = f"{process}-{self.counter}"
        invocation = self.recorder.invoke(process, function, key, value, node, self.now())
        return _Request(invocation, function, key, value)

    def complete(self, request: _Request) -> None:
        roll = self.random.random()
        if roll < self.workload.fail_probability:
            self.recorder.fail(request.invocation, time_s=self.now())
        elif roll < self.workload.fail_probability + self.workload.info_probability:
            if request.function in ("put", "delete"):
                self.decide_fate(request)
            self.recorder.info(request.invocation, time_s=self.now())
        else:
            self.complete_ok(request)

    def complete_ok(self, request: _Request) -> None:
        invocation = request.invocation
        if request.function == "put":
            self.store.write(request)
            self.recorder.ok(invocation, time_s=self.now())
        elif request.function == "delete":
            if self.store.write(request):
                self.recorder.ok(invocation, time_s=self.now())
            else:
                self.recorder.fail(invocation, time_s=self.now())
        elif request.function == "get":
            assert request.key is not None
            self.recorder.ok(invocation, self.store.values.get(request.key), time_s=self.now())
        else:
            keys = self.shard_keys[request.shard]
            covers = keys if self.random.random() < self.workload.covers_probability else None
            self.recorder.ok(
                invocation,
                self.listing(request.shard),
                covers=covers,
                shard=f"s{request.shard}",
                time_s=self.now(),
            )

    def decide_fate(self, request: _Request) -> None:
        """An unknown outcome: take effect now, later, or never."""
        fate = self.random.randrange(3)
        if fate == 0:
            self.store.write(request)
        elif fate == 1:
            self.store.lingering.append(request)

    def land_lingering_write(self) -> None:
        request = self.store.lingering.pop(self.random.randrange(len(self.store.lingering)))
        self.store.write(request)

    def listing(self, shard: int) -> dict[str, str]:
        values = self.store.values
        return {key: values[key] for key in self.shard_keys[shard] if key in values}

    def final_reads(self) -> None:
        for node in self.nodes:
            process = f"final-{node}"
            for shard in range(self.workload.shards):
                invocation = self.recorder.invoke(process, "list", None, None, node, self.now())
                self.recorder.ok(
                    invocation,
                    self.listing(shard),
                    final=True,
                    covers=self.shard_keys[shard],
                    shard=f"s{shard}",
                    time_s=self.now(),
                )
            for key in self.random.sample(self.keys, min(3, len(self.keys))):
                invocation = self.recorder.invoke(process, "get", key, None, node, self.now())
                self.recorder.ok(
                    invocation, self.store.values.get(key), final=True, time_s=self.now()
                )


def generate_history(
    workload: Workload, seed: int, recorder: HistoryRecorder | None = None
) -> HistoryRecorder:
    """Record a synthetic history into ``recorder`` (a new in-memory one by default)."""
    target = recorder if recorder is not None else HistoryRecorder(clock=lambda: 0.0)
    _Generator(workload, seed, target).run()
    return target
