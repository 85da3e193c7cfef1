"""The sans-I/O client engine, driven without any network: a fake cluster answers the
engine's requests, so routing, failover, retry bounds, backoff, view refreshes and
error mapping are checked exactly and deterministically (which replica got which
request, how many attempts, which pauses), independently of timing."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest

from causalkv.client.engine import Engine
from causalkv.client.errors import BadRequest, DependencyTimeout, Unavailable
from causalkv.client.protocol import (
    Effect,
    Gather,
    GatherResult,
    HttpRequest,
    HttpResponse,
    Outcome,
    Program,
    Sleep,
    TransportFailure,
)
from causalkv.client.routing import Router
from causalkv.client.session import Session
from causalkv.client.settings import ClientSettings
from causalkv.core.token import Token, encode_token
from causalkv.core.view import parse_sharded_view
from causalkv.core.writer import make_writer

T = TypeVar("T")

VIEW = {
    "s1": [
        {"address": "n1:1", "id": 1},
        {"address": "n2:1", "id": 2},
        {"address": "n3:1", "id": 3},
    ],
    "s2": [
        {"address": "n4:1", "id": 4},
        {"address": "n5:1", "id": 5},
        {"address": "n6:1", "id": 6},
    ],
}
Handler = Callable[[HttpRequest], HttpResponse | TransportFailure | None]


def json_response(status: int, body: object, retry_after_s: float | None = None) -> HttpResponse:
    return HttpResponse(status, msgspec.json.encode(body), retry_after_s)


@dataclass
class FakeCluster:
    """Nodes that serve /view and /data like the real ones (one value per key, no causality),
    unless ``override`` answers first (to inject failures)."""

    view: dict[str, Any] = field(default_factory=lambda: VIEW)
    epoch: int = 1
    data: dict[str, str] = field(default_factory=dict)
    requests: list[HttpRequest] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    override: Handler | None = None
    sequence: int = 0

    def token(self, address: str) -> dict[str, str]:
        self.sequence += 1
        writer = make_writer(self.epoch, 0, 0, address.encode().ljust(6, b"-")[:6])
        return encode_token(Token({writer: self.sequence}))

    def handle(self, request: HttpRequest) -> HttpResponse | TransportFailure:
        self.requests.append(request)
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        if request.path == "/view":
            return json_response(200, {"view": self.view})
        if request.path.startswith("/data/"):
            key = request.path[len("/data/") :].split("?")[0]
            metadata = self.token(request.address)
            if request.method == "PUT":
                body = msgspec.json.decode(request.body or b"{}")
                self.data[key] = body["value"]
                return json_response(200, {"causal-metadata": metadata})
            if key not in self.data:
                return json_response(404, {"causal-metadata": metadata})
            if request.method == "DELETE":
                del self.data[key]
                return json_response(200, {"causal-metadata": metadata})
            return json_response(200, {"value": self.data[key], "causal-metadata": metadata})
        if request.path == "/data":
            return json_response(200, {"items": dict(self.data), "causal-metadata": {}})
        return json_response(404, {"error": "no such endpoint"})

    def run(self, program: Program[T]) -> T:
        """A driver: performs the program's effects against this fake cluster."""
        try:
            effect = next(program)
            while True:
                effect = program.send(self.perform(effect))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, HttpRequest):
            return self.handle(effect)
        if isinstance(effect, Sleep):
            self.sleeps.append(effect.seconds)
            return None
        assert isinstance(effect, Gather)
        results = []
        for program in effect.programs:
            try:
                results.append(GatherResult(value=self.run(program)))
            except Exception as error:
                results.append(GatherResult(error=error))
        return results

    def data_requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.address) for r in self.requests if r.path.startswith("/data")]


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def make_engine(
    seeds: tuple[str, ...] = ("n1:1",), clock: Clock | None = None, **settings: Any
) -> Engine:
    options = ClientSettings(**settings)
    router = Router(seeds, options, clock or Clock(), random.Random(7))
    return Engine(router, Session(), options)


def owners(key: str) -> tuple[str, ...]:
    view = parse_sharded_view(VIEW)
    return view.replicas(view.shard_index_for_key(key))


def test_learns_the_view_once_then_goes_straight_to_the_owner() -> None:
    cluster, engine = FakeCluster(), make_engine()
    for i in range(20):
        cluster.run(engine.put(f"k{i}", "v"))
        assert cluster.run(engine.fetch(f"k{i}")).value == "v"
    assert [r.path for r in cluster.requests].count("/view") == 1
    for i in range(20):
        key = f"k{i}"
        targets = {a for m, a in cluster.data_requests() if m == "PUT"}
        assert targets  # sanity
        sent = [r.address for r in cluster.requests if r.path == f"/data/{key}"]
        assert set(sent) <= set(owners(key))
        assert len(set(sent)) == 1  # one preferred replica per shard
    assert not engine.session.is_empty()


def test_a_refused_connection_fails_over_and_the_node_is_then_avoided() -> None:
    cluster, engine = FakeCluster(), make_engine()
    key = "greeting"
    cluster.run(engine.put(key, "hello"))
    preferred = cluster.data_requests()[-1][1]
    cluster.override = lambda r: (
        TransportFailure("refused", maybe_sent=False) if r.address == preferred else None
    )
    before = len(cluster.requests)
    assert cluster.run(engine.fetch(key)).value == "hello"
    tried = [r.address for r in cluster.requests[before:]]
    assert tried[0] == preferred and tried[1] != preferred and tried[1] in owners(key)
    before = len(cluster.requests)
    cluster.run(engine.put(key, "again"))
    assert [r.address for r in cluster.requests[before:]] == [tried[1]]  # no retry on the dead
    assert cluster.sleeps == []


def test_retries_are_bounded_with_backoff_and_view_refresh() -> None:
    cluster, engine = FakeCluster(), make_engine(retries=7, backoff_s=0.1, backoff_max_s=0.25)
    cluster.run(engine.ensure_view())
    cluster.override = lambda r: (
        TransportFailure("refused", maybe_sent=False) if r.path.startswith("/data") else None
    )
    with pytest.raises(Unavailable) as raised:
        cluster.run(engine.put("k", "v"))
    attempts = cluster.data_requests()
    assert len(attempts) == 8
    assert {address for _, address in attempts} == set(owners("k"))
    assert cluster.sleeps == [0.1, 0.2]  # after each full round over the 3 replicas, capped
    assert [r.path for r in cluster.requests].count("/view") == 3  # initial + once per round
    assert not raised.value.maybe_applied
    assert len(raised.value.attempts) == 8


def _puts_after_ambiguous_failures(cluster: FakeCluster, engine: Engine) -> int:
    """Every PUT times out after it was sent: how many PUTs went out before the
    error (which must say the write may have been applied)."""
    cluster.override = lambda r: (
        TransportFailure("no answer", maybe_sent=True) if r.method == "PUT" else None
    )
    with pytest.raises(Unavailable) as raised:
        cluster.run(engine.put("k", "v"))
    assert raised.value.maybe_applied
    return [r.method for r in cluster.requests].count("PUT")


def test_an_ambiguous_write_is_not_sent_again() -> None:
    cluster, engine = FakeCluster(), make_engine(retries=2)
    assert _puts_after_ambiguous_failures(cluster, engine) == 1
    # A 500 after the request went out is as ambiguous.
    cluster.requests.clear()
    cluster.override = lambda r: (
        json_response(500, {"error": "internal"}) if r.method == "DELETE" else None
    )
    with pytest.raises(Unavailable) as raised:
        cluster.run(engine.delete("k"))
    assert raised.value.maybe_applied
    assert [r.method for r in cluster.requests].count("DELETE") == 1


def test_an_ambiguous_write_is_resent_when_asked_and_reported_as_maybe_applied() -> None:
    cluster, engine = FakeCluster(), make_engine(retries=2, resend_ambiguous_writes=True)
    assert _puts_after_ambiguous_failures(cluster, engine) == 3
    # A delete whose first attempt may have deleted the value counts a later 404 as done.
    cluster.override = None
    cluster.data["k"] = "v"
    calls = {"count": 0}

    def first_times_out(request: HttpRequest) -> TransportFailure | None:
        if request.method == "DELETE" and calls["count"] == 0:
            calls["count"] += 1
            cluster.data.pop("k")  # it did reach the node
            return TransportFailure("no answer", maybe_sent=True)
        return None

    cluster.override = first_times_out
    assert cluster.run(engine.delete("k")) is True


def test_not_in_view_refreshes_the_view_and_retries() -> None:
    cluster, engine = FakeCluster(), make_engine()
    cluster.run(engine.ensure_view())
    # The cluster moves shard s1 to new nodes; old nodes say they are not members.
    new_view = {
        "s1": [{"address": "m1:1", "id": 11}, {"address": "m2:1", "id": 12}],
        "s2": VIEW["s2"],
    }
    old_s1 = {str(node["address"]) for node in VIEW["s1"]}
    cluster.view = new_view
    cluster.override = lambda r: (
        json_response(503, {"error": "this node is not in the current view"})
        if r.address in old_s1 and r.path.startswith("/data")
        else None
    )
    key = next(k for k in (f"k{i}" for i in range(50)) if owners(k) == tuple(sorted(old_s1)))
    cluster.run(engine.put(key, "v"))
    assert cluster.data_requests()[-1][1] in ("m1:1", "m2:1")
    assert [r.path for r in cluster.requests].count("/view") == 2


def test_dependency_timeout_and_bad_requests_are_not_retried() -> None:
    cluster, engine = FakeCluster(), make_engine()
    cluster.override = lambda r: (
        json_response(503, {"error": "timed out while waiting for depended updates"})
        if r.path.startswith("/data")
        else None
    )
    with pytest.raises(DependencyTimeout):
        cluster.run(engine.fetch("k"))
    assert len(cluster.data_requests()) == 1
    cluster.override = lambda r: (
        json_response(400, {"error": "nope"}) if r.path.startswith("/data") else None
    )
    with pytest.raises(BadRequest, match="nope"):
        cluster.run(engine.put("k", "v"))
    assert len(cluster.data_requests()) == 2


def test_a_write_whose_forward_went_silent_is_not_sent_again() -> None:
    """A node answers 503 "outcome unknown" when it forwarded the write and the
    owner fell silent: the write may have been applied, so the client reports
    it (maybe_applied) instead of sending it to another replica."""
    cluster, engine = FakeCluster(), make_engine(retries=3)
    unknown = {
        "error": "the replica this write was forwarded to did not answer;"
        " it may or may not have been applied"
    }
    cluster.override = lambda r: json_response(503, unknown) if r.path.startswith("/data") else None
    with pytest.raises(Unavailable, match="outcome is unknown") as raised:
        cluster.run(engine.put("k", "v"))
    assert raised.value.maybe_applied
    assert len(cluster.data_requests()) == 1


def test_overload_honours_retry_after() -> None:
    cluster, engine = FakeCluster(), make_engine(backoff_max_s=0.5)
    answers = iter([json_response(503, {"error": "too many waiting requests"}, 3.0)])

    def overloaded_once(request: HttpRequest) -> HttpResponse | None:
        return next(answers, None) if request.path.startswith("/data") else None

    cluster.override = overloaded_once
    cluster.run(engine.put("k", "v"))
    assert cluster.sleeps == [0.5]  # Retry-After, capped by backoff_max_s


def test_newer_epoch_or_age_triggers_a_view_refresh() -> None:
    clock = Clock()
    cluster, engine = FakeCluster(), make_engine(clock=clock, view_refresh_interval_s=30)
    cluster.run(engine.put("a", "1"))
    cluster.run(engine.put("b", "2"))
    assert [r.path for r in cluster.requests].count("/view") == 1
    cluster.epoch = 2  # responses now carry writers of a newer view epoch
    cluster.run(engine.put("c", "3"))
    cluster.run(engine.put("d", "4"))
    assert [r.path for r in cluster.requests].count("/view") == 2
    clock.now_s += 31
    cluster.run(engine.put("e", "5"))
    assert [r.path for r in cluster.requests].count("/view") == 3


def test_no_view_anywhere_is_reported_clearly() -> None:
    cluster, engine = FakeCluster(view={}), make_engine(seeds=("n1:1", "n2:1"))
    with pytest.raises(Unavailable, match="no view is installed"):
        cluster.run(engine.fetch("k"))


def test_listing_every_shard_gathers_one_listing_per_shard() -> None:
    cluster, engine = FakeCluster(), make_engine()
    listings = cluster.run(engine.list_all())
    assert [listing.shard for listing in listings] == ["s1", "s2"]
    assert listings[0].node in owners_of_shard(0) and listings[1].node in owners_of_shard(1)


def owners_of_shard(index: int) -> tuple[str, ...]:
    return parse_sharded_view(VIEW).replicas(index)
