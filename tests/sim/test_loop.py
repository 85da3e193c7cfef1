"""The simulator's machinery: event order, futures, tasks, processes, disk, network."""

from __future__ import annotations

import random

import pytest

from causalkv.core.effects import DurableMeta, PersistBatch
from causalkv.core.keystore import Version
from causalkv.core.writer import make_writer
from causalkv.sim.disk import DiskProfile, SimDisk
from causalkv.sim.loop import EventLoop, Process, ProcessKilled, SimFuture, SimTimeout, wait_for
from causalkv.sim.network import Network, NetworkProfile, NotDelivered, PeerUnavailable
from causalkv.sim.trace import Trace


def test_events_run_in_time_then_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_at(2.0, lambda: seen.append("b"))
    loop.call_at(1.0, lambda: seen.append("a1"))
    loop.call_at(1.0, lambda: seen.append("a2"))
    cancelled = loop.call_at(1.5, lambda: seen.append("never"))
    cancelled.cancel()
    assert loop.run_until(10.0)
    assert seen == ["a1", "a2", "b"]
    assert loop.now == 10.0


def test_halt_stops_after_the_current_event() -> None:
    loop = EventLoop()
    seen: list[int] = []

    def first() -> None:
        seen.append(1)
        loop.halt("stop")

    loop.call_at(1.0, first)
    loop.call_at(2.0, lambda: seen.append(2))
    assert not loop.run_until(5.0)
    assert seen == [1] and loop.halted == "stop"


def test_tasks_await_futures_and_sleep() -> None:
    loop = EventLoop()
    process = Process(loop, "p")
    future: SimFuture[int] = loop.create_future()

    async def body() -> int:
        await loop.sleep(1.0)
        value = await future
        return value + 1

    task = process.spawn(body())
    loop.call_at(3.0, lambda: future.set_result(41))
    loop.run_until(10.0)
    assert task.future.result() == 42


def test_killing_a_process_closes_its_tasks() -> None:
    loop = EventLoop()
    process = Process(loop, "node")
    cleaned: list[bool] = []

    async def body() -> None:
        try:
            await loop.sleep(5.0)
        finally:
            cleaned.append(True)

    task = process.spawn(body())
    loop.run_until(1.0)
    process.kill()
    assert cleaned == [True]
    assert isinstance(task.future.exception(), ProcessKilled)
    late = process.spawn(body())
    assert isinstance(late.future.exception(), ProcessKilled)


def test_wait_for_times_out() -> None:
    loop = EventLoop()
    never: SimFuture[None] = loop.create_future()
    outcome = wait_for(loop, never, 2.0)
    loop.run_until(5.0)
    assert isinstance(outcome.exception(), SimTimeout)


def _batch(persist_id: int, key: str, value: str) -> PersistBatch:
    writer = make_writer(1, 0, 0, b"\x00\x00\x00\x00\x00\x01")
    meta = DurableMeta(b"\x00" * 6, "n1:7000", None, None, 1, None, persist_id, {}, persist_id)
    return PersistBatch(
        persist_id, {key: (Version(writer, persist_id, persist_id, {}, value),)}, meta
    )


def test_disk_group_commits_and_crash_loses_what_is_not_durable() -> None:
    loop = EventLoop()
    disk = SimDisk(
        loop, random.Random(1), DiskProfile(0.01, 0.01, crash_keeps_commit_probability=0.0)
    )
    durable: list[int] = []
    disk.attach(durable.append)
    disk.submit(_batch(1, "a", "1"))
    disk.submit(_batch(2, "b", "2"))  # queued behind the commit in flight
    disk.submit(_batch(3, "c", "3"))
    loop.run_until(0.015)
    assert durable == [1]
    loop.run_until(0.025)
    assert durable == [1, 3]  # 2 and 3 committed together
    disk.submit(_batch(4, "d", "4"))
    disk.crash()
    meta, entries = disk.load()
    assert meta is not None and meta.lamport == 3
    assert sorted(key for key, _ in entries) == ["a", "b", "c"]


def _network(profile: NetworkProfile) -> tuple[EventLoop, Network]:
    loop = EventLoop()
    return loop, Network(loop, random.Random(7), profile, Trace(loop))


class _Host:
    def __init__(self, address: str) -> None:
        self.address = address
        self.alive = True
        self.generation = 1
        self.bodies: list[bytes] = []

    def receive_envelope_body(self, body: bytes) -> None:
        self.bodies.append(body)


def test_one_way_partition() -> None:
    """a -/-> b: a cannot connect to b; b's requests reach a but the replies are lost."""
    loop, network = _network(NetworkProfile(0.001, 0.002))
    a, b = _Host("a"), _Host("b")
    network.hosts = {"a": a, "b": b}
    cut = network.cut(frozenset({("a", "b")}))
    blocked = network.post_envelope("a", "b", b"x", 10.0, "test")
    flowing = network.post_envelope("b", "a", b"y", 10.0, "test")
    loop.run_until(2.0)
    assert isinstance(blocked.exception(), NotDelivered)
    assert a.bodies == [b"y"] and not flowing.done()
    loop.run_until(20.0)
    assert isinstance(flowing.exception(), PeerUnavailable)
    network.heal(cut)
    healed = network.post_envelope("a", "b", b"z", 10.0, "test")
    loop.run_until(22.0)
    assert healed.exception() is None and b.bodies == [b"z"]


def test_call_to_a_node_that_dies_is_reset() -> None:
    loop, network = _network(NetworkProfile(0.001, 0.002))
    host = _Host("a")
    network.hosts = {"a": host}
    never: SimFuture[int] = loop.create_future()

    def die() -> None:
        host.alive = False
        never.set_exception(ProcessKilled())

    def serve() -> SimFuture[int]:
        loop.call_later(0.5, die)
        return never

    reply = network.call(None, "a", 5.0, serve)
    loop.run_until(2.0)
    error = reply.exception()
    assert isinstance(error, PeerUnavailable) and not isinstance(error, NotDelivered)
    refused = network.call(None, "a", 5.0, serve)
    loop.run_until(3.0)
    assert isinstance(refused.exception(), NotDelivered)


@pytest.mark.parametrize("rate", [0.5])
def test_duplication_and_reordering_deliver_extra_and_late_copies(rate: float) -> None:
    loop, network = _network(
        NetworkProfile(
            0.001, 0.002, duplicate_rate=rate, reorder_rate=rate, reorder_delay_max_s=1.0
        )
    )
    host = _Host("b")
    network.hosts = {"b": host}
    for index in range(40):
        network.post_envelope("a", "b", bytes([index]), 10.0, "test")
    loop.run_until(5.0)
    assert len(host.bodies) > 40
    assert [body[0] for body in host.bodies] != sorted(body[0] for body in host.bodies)


def test_a_message_storm_is_reported_once_as_a_runaway() -> None:
    """Seed 101268 once made two replicas answer every sync request with one of
    their own, each round adding more: envelopes grew until memory ran out. The
    network now reports a run whose peer traffic passes a cap (far above any
    normal run) to the loop's ``on_runaway``, which the simulation turns into
    a failure."""
    loop, network = _network(NetworkProfile(0.001, 0.002))
    a, b = _Host("a"), _Host("b")
    network.hosts = {"a": a, "b": b}
    reports: list[str] = []
    loop.on_runaway = reports.append
    network.envelope_bytes_max = 1000
    for _ in range(5):
        network.post_envelope("a", "b", b"x" * 300, 10.0, "test")
    assert len(reports) == 1 and reports[0].startswith("runaway:"), reports
    assert network.statistics["envelope_bytes"] == 1500
