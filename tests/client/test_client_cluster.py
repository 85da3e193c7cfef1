"""The client library against a real 6-node, 2-shard cluster: CRUD and the mapping API
(blocking and asyncio), listings per shard and across shards, input validation, and
routing: requests go straight to a replica of the owning shard, so no node forwards."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from causalkv import (
    AsyncClient,
    BadRequest,
    CausalKVError,
    Client,
    KeyNotFound,
    Session,
    Unavailable,
)
from causalkv.core.view import parse_sharded_view
from causalkv.local_cluster import LocalCluster, http_json
from tests.client.conftest import forwarded_requests


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_crud_and_mapping_api(addresses: list[str]) -> None:
    key = unique("crud")
    with Client(addresses[:1]) as kv:
        assert kv.get(key, None) is None
        assert kv.get(key, "fallback") == "fallback"
        with pytest.raises(KeyNotFound) as raised:
            kv.get(key)
        assert isinstance(raised.value, KeyError)  # mapping idioms work
        assert key not in kv

        kv.put(key, "one")
        assert kv.get(key) == "one"
        kv[key] = "two"
        assert kv[key] == "two"
        assert key in kv

        assert kv.delete(key) is True
        assert kv.delete(key) is False
        assert key not in kv
        kv[key] = "three"
        del kv[key]
        with pytest.raises(KeyNotFound):
            del kv[key]
        with pytest.raises(KeyNotFound):
            kv[key]


def test_unusual_keys_and_values_round_trip(addresses: list[str]) -> None:
    keys = ["..", ".", "a/../b", "spaces and ?query#frag", "ünïcødé ✓", "%2F", "k" * 2048]
    with Client(addresses) as kv:
        for key in keys:
            kv[key] = f"value of {key}\n\ttabs"
        for key in keys:
            assert kv[key] == f"value of {key}\n\ttabs"
        kv["empty-value"] = ""
        assert kv["empty-value"] == ""
        assert "empty-value" in kv


def test_bad_input_fails_before_any_request() -> None:
    # An unroutable seed: if validation needed the network the test would see Unavailable.
    with Client("127.0.0.1:9", retries=0) as kv:
        for key in ("", "k" * 2049):
            with pytest.raises(BadRequest):
                kv.put(key, "v")
        with pytest.raises(BadRequest):
            kv.put("k", 42)  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            kv.get(7)  # type: ignore[call-overload]
        with pytest.raises(Unavailable):
            kv.get("k")
    with pytest.raises(BadRequest):
        Client("not-an-address")
    with pytest.raises(BadRequest):
        Client(["127.0.0.1:8081"], session="garbage")


def test_listings_per_shard_and_across_shards(cluster: LocalCluster) -> None:
    prefix = unique("list")
    written = {f"{prefix}-{i}": f"v{i}" for i in range(40)}
    with Client(cluster.nodes[5].address) as kv:
        for key, value in written.items():
            kv[key] = value
        view = kv.view()
        listings = kv.listings()
        assert [listing.shard for listing in listings] == [shard.name for shard in view.shards]
        for index, listing in enumerate(listings):
            assert listing.node in view.replicas(index)
            mine = {k: v for k, v in listing.items.items() if k.startswith(prefix)}
            expected = {k: v for k, v in written.items() if view.shard_index_for_key(k) == index}
            assert mine == expected
            assert {
                k: v for k, v in kv.items(listing.shard).items() if k.startswith(prefix)
            } == expected
        everything = kv.items()
        assert {k: v for k, v in everything.items() if k.startswith(prefix)} == written
        assert [k for k in kv.keys() if k.startswith(prefix)] == sorted(written)  # noqa: SIM118
        assert [k for k in kv if k.startswith(prefix)] == sorted(written)
        with pytest.raises(BadRequest):
            kv.items("no-such-shard")


def test_requests_go_straight_to_the_owning_shard(cluster: LocalCluster) -> None:
    """A client that knows the view never makes a node forward a request."""
    before = forwarded_requests(cluster)
    prefix = unique("route")
    with Client([node.address for node in cluster.nodes]) as kv:
        for i in range(60):
            key = f"{prefix}-{i}"
            kv[key] = str(i)
            reading = kv.fetch(key)
            assert reading.value == str(i)
            view = kv.view()
            assert reading.node in view.replicas(view.shard_index_for_key(key))
            assert kv.shard_for(key) == view.shards[view.shard_index_for_key(key)].name
            assert kv.replicas_for(key)[0] == reading.node  # sticky preferred replica
        kv.delete(f"{prefix}-0")
        kv.items()
    assert forwarded_requests(cluster) == before


def test_view_matches_the_nodes_view(cluster: LocalCluster) -> None:
    status, body = http_json("GET", f"{cluster.nodes[0].url}/view")
    assert status == 200
    with Client(cluster.nodes[3].address) as kv:
        assert kv.view().to_sharded_json() == parse_sharded_view(body["view"]).to_sharded_json()
        assert kv.view(refresh=True).to_sharded_json() == body["view"]


def test_siblings_are_reported(addresses: list[str]) -> None:
    key = unique("siblings")
    with Client(addresses) as kv:
        kv[key] = "only"
        reading = kv.fetch(key, siblings=True)
        assert reading.value == "only"
        assert all(sibling.value in ("only", None) for sibling in reading.siblings)


def test_probe_reports_status(cluster: LocalCluster) -> None:
    with Client(cluster.nodes[0].address) as kv:
        probes = kv.probe_all()
    assert [probe.address for probe in probes] == [node.address for node in cluster.nodes]
    for probe in probes:
        assert probe.up and probe.status is not None and probe.ping_ms is not None
        assert probe.status["epoch"] >= 1


def test_async_client_has_the_same_behaviour(cluster: LocalCluster) -> None:
    prefix = unique("async")
    before = forwarded_requests(cluster)

    async def scenario() -> Session:
        async with AsyncClient([node.address for node in cluster.nodes]) as kv:
            assert await kv.get(f"{prefix}-missing", None) is None
            with pytest.raises(KeyNotFound):
                await kv.get(f"{prefix}-missing")
            async with asyncio.TaskGroup() as group:
                for i in range(50):
                    group.create_task(kv.put(f"{prefix}-{i}", str(i)))
            # The session saw every write, whichever finished last.
            values = await asyncio.gather(*(kv.get(f"{prefix}-{i}") for i in range(50)))
            assert values == [str(i) for i in range(50)]
            assert await kv.contains(f"{prefix}-3")
            assert await kv.delete(f"{prefix}-3") is True
            assert not await kv.contains(f"{prefix}-3")
            keys = [k for k in await kv.keys() if k.startswith(prefix)]
            assert keys == sorted(f"{prefix}-{i}" for i in range(50) if i != 3)
            listings = await kv.listings()
            assert len(listings) == 2
            assert (await kv.view()).shards[0].name == "s1"
            probes = await kv.probe_all()
            assert all(probe.up for probe in probes)
            return kv.session

    session = asyncio.run(scenario())
    # The blocking client continues the async client's session.
    with Client(cluster.nodes[0].address, session=session.export()) as kv:
        assert kv[f"{prefix}-7"] == "7"
    assert forwarded_requests(cluster) == before


def test_errors_share_one_base_class() -> None:
    for error in (KeyNotFound, BadRequest, Unavailable):
        assert issubclass(error, CausalKVError)
