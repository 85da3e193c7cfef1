"""Real network faults against a real causalkv cluster: partitions, pauses and crashes.

Each node is its own process in its own test host (network namespace, own IP);
faults are real: nftables drops on the bridge (partitions), an NFQUEUE link
emulator (loss, delay, jitter), SIGSTOP/SIGCONT and SIGKILL. Clients are threads
in the root namespace, each a history process with its own causal session.
Every scenario records its history, heals, waits for every replica of every
shard to hold the same items, takes one final listing per node, and then
demands that (a) the history checker accepts the history (causal+
consistency, convergence, no lost acknowledged write) and (b) no client's last
acknowledged put of a key was replaced by a value that client knew was older.

Timing: phases end on conditions (each client made N more acknowledged
operations, a request is seen waiting in ``/status``), never on bare sleeps;
the only time bounds asserted are the causal wait bound itself, with margins
for a loaded 2-core machine.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from tests.netfaults.cluster import (
    DEPENDENCY_TIMEOUT_BODY,
    Client,
    Cluster,
    Load,
    Node,
    OperationRecord,
    Workload,
    cluster_factory_fixture,
    http_json,
    wait_until,
)

pytestmark = pytest.mark.netns

make_cluster = cluster_factory_fixture()
MakeCluster = Callable[..., Cluster]

SHORT_WAIT_S = 3.0
"""A short causal wait bound, for scenarios that must see the timeout answer."""
TIMEOUT_MARGIN_S = 4.0
"""How late after the bound a timeout answer may come on a loaded machine."""


# --------------------------------------------------------------------------- helpers


def local_assignments(
    cluster: Cluster, nodes: Sequence[Node], prefix: str, keys_per_client: int = 6
) -> list[tuple[Client, list[str]]]:
    """One client per node, each using keys of that node's own shard (no forwarding)."""
    assignments = []
    for node in nodes:
        keys = cluster.keys_for(node.shard, keys_per_client, f"{prefix}-{node.name}")
        assignments.append((cluster.client(f"p-{node.name}", node), keys))
    return assignments


class Pending:
    """Run one client operation in a thread, to watch it block."""

    def __init__(self, operation: Callable[[], OperationRecord]) -> None:
        self.record: OperationRecord | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()

    def _run(self, operation: Callable[[], OperationRecord]) -> None:
        self.record = operation()
        self.finished = time.monotonic()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout_s: float) -> OperationRecord:
        self._thread.join(timeout_s)
        assert self.record is not None, f"operation still blocked after {timeout_s} s"
        return self.record

    @property
    def elapsed_s(self) -> float:
        assert self.finished is not None
        return self.finished - self.started


def waiting_requests(node: Node) -> int:
    reply = http_json(node.address, "GET", "/status", timeout_s=2.0)
    assert reply.status == 200, reply
    return int(reply.body["waiting_requests"])


OUTCOME_UNKNOWN_BODY = {
    "error": "the replica this write was forwarded to did not answer;"
    " it may or may not have been applied"
}


def assert_dependency_timeout(record: OperationRecord, bound_s: float) -> None:
    assert record.status == 503, record
    assert record.result == DEPENDENCY_TIMEOUT_BODY, record
    assert bound_s - 0.5 <= record.elapsed_s <= bound_s + TIMEOUT_MARGIN_S, record


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def set_isolated(cluster: Cluster, isolated: Sequence[Node]) -> None:
    """Exactly ``isolated`` cut off from everyone (heal, then cut the rest again:
    the harness has no per-host heal; the gap between the two rule sets is one
    nft transaction, a few milliseconds of full connectivity)."""
    cluster.network.heal()
    for node in isolated:
        cluster.network.isolate(node.host)


# --------------------------------------------------------------------------- partitions


def test_split_one_two_stays_available_and_converges(make_cluster: MakeCluster) -> None:
    """Both shards' 3 replicas split 1|2; clients on both sides keep reading and
    writing through nodes on their side (own keys, plus keys both sides write).
    Every operation succeeds during the split; after the heal every replica
    converges and no acknowledged write is lost."""
    cluster = make_cluster(shards=(3, 3))
    h0, h1, h2, h3, h4, h5 = cluster.nodes
    minority, majority = [h0, h3], [h1, h2, h4, h5]
    assignments = []
    for node in cluster.nodes:
        side = "minority" if node in minority else "majority"
        own = cluster.keys_for(node.shard, 5, f"{side}-{node.name}")
        shared = cluster.keys_for(node.shard, 3, "both-sides")
        assignments.append((cluster.client(f"p-{node.name}", node), own + shared))
    with Load(assignments, Workload(pause_s=0.005)) as load:
        load.wait_for_progress(10)
        cluster.network.partition([[n.host for n in minority], [n.host for n in majority]])
        load.wait_for_progress(40, timeout_s=60)
        cluster.network.heal()
        load.wait_for_progress(10)
    print(f"split 1|2: {load.tally.render()}")
    assert load.tally.errors == 0, f"operations failed during the split: {load.tally.render()}"
    cluster.finish()


def test_dependency_across_partition_blocks_until_heal(make_cluster: MakeCluster) -> None:
    """A client writes through the majority, then reads and writes through the
    isolated replica: both wait (the replica cannot fetch the dependency), and
    succeed with the right value once the partition heals."""
    cluster = make_cluster(shards=(3,), causal_wait_s=15.0)
    h0, h1, h2 = cluster.nodes
    cluster.network.partition([[h0.host], [h1.host, h2.host]])
    writer = cluster.client("writer", h1)
    assert writer.put("dep").outcome == "ok"
    written = writer.put("dep", "after-partition")
    assert written.outcome == "ok"
    writer.use(h0)
    reader = cluster.client("reader", h0)
    reader.metadata = dict(writer.metadata)  # handed over out of band: same dependency
    blocked_get = Pending(lambda: writer.get("dep"))
    blocked_put = Pending(lambda: reader.put("other"))
    wait_until(lambda: waiting_requests(h0) >= 2, 10.0, "both requests to wait on h0")
    time.sleep(1.0)  # not an assertion of timing: they must simply still be waiting
    assert not blocked_get.done and not blocked_put.done, "answered without the dependency"
    healed_at = time.monotonic()
    cluster.network.heal()
    got, put = blocked_get.result(15.0), blocked_put.result(15.0)
    assert got.outcome == "ok" and got.result == "after-partition", got
    assert put.outcome == "ok", put
    assert blocked_get.finished is not None and blocked_get.finished >= healed_at
    print(f"dependency wait ended {blocked_get.finished - healed_at:.3f} s after the heal")
    cluster.finish()


def test_dependency_across_partition_times_out(make_cluster: MakeCluster) -> None:
    """Same, but the heal never comes: after the (short) causal wait bound the
    read and the write get 503 with the exact error body."""
    cluster = make_cluster(shards=(3,), causal_wait_s=SHORT_WAIT_S)
    h0, h1, h2 = cluster.nodes
    cluster.network.partition([[h0.host], [h1.host, h2.host]])
    writer = cluster.client("writer", h1)
    assert writer.put("dep").outcome == "ok"
    reader = cluster.client("reader", h0)
    reader.metadata = dict(writer.metadata)
    writer.use(h0)
    get = Pending(lambda: writer.get("dep"))
    put = Pending(lambda: reader.put("dep"))
    assert_dependency_timeout(get.result(SHORT_WAIT_S + 20), SHORT_WAIT_S)
    assert_dependency_timeout(put.result(SHORT_WAIT_S + 20), SHORT_WAIT_S)
    assert get.record is not None and put.record is not None
    assert (get.record.outcome, put.record.outcome) == ("fail", "info")
    print(f"short bound: 503 after {get.record.elapsed_s:.2f} s / {put.record.elapsed_s:.2f} s")
    # The isolated replica itself is fine: requests without the dependency work.
    fresh = cluster.client("fresh", h0)
    assert fresh.put("independent").outcome == "ok"
    cluster.network.heal()
    cluster.finish()


def test_dependency_timeout_at_default_bound(make_cluster: MakeCluster) -> None:
    """With the default causal wait bound (20 s) the blocked read answers 503
    after 20 s, not earlier, and not much later."""
    cluster = make_cluster(shards=(3,))
    assert cluster.causal_wait_s == 20.0
    h0, h1, h2 = cluster.nodes
    cluster.network.partition([[h0.host], [h1.host, h2.host]])
    writer = cluster.client("writer", h1)
    assert writer.put("dep").outcome == "ok"
    writer.use(h0)
    get = Pending(lambda: writer.get("dep"))
    wait_until(lambda: waiting_requests(h0) >= 1, 10.0, "the read to wait on h0")
    record = get.result(20.0 + 30.0)
    assert_dependency_timeout(record, 20.0)
    print(f"default bound: 503 after {record.elapsed_s:.2f} s")
    cluster.network.heal()
    cluster.finish()


def test_forwarding_when_owning_shard_is_partly_or_wholly_unreachable(
    make_cluster: MakeCluster,
) -> None:
    """Requests through a node of another shard: with one replica of the owning
    shard reachable they succeed through it; with none reachable they wait, then
    answer the timeout, while the forwarding node keeps answering /ping and its
    own shard's keys at once.

    A write forwarded over a connection that goes silent may have been applied,
    so it is not sent again elsewhere (that could apply it twice, the second
    time after writes that depend on it): it answers 503 "outcome unknown".
    That can happen once per replica cut off; after it the forwarder knows the
    replica is unreachable and sends writes to the one that answers."""
    cluster = make_cluster(shards=(3, 3), causal_wait_s=SHORT_WAIT_S)
    o0, o1, o2, forwarder, _, _ = cluster.nodes
    keys = cluster.keys_for("s1", 4, "owned-by-s1")
    local_key = cluster.keys_for("s2", 1, "owned-by-s2")[0]
    client = cluster.client("through-s2", forwarder)
    for key in keys:
        assert client.put(key).outcome == "ok"

    # Partly unreachable: only o2 can be reached from the forwarder.
    cluster.network.partition([[forwarder.host], [o0.host, o1.host]])
    records = [operation(key) for key in keys for operation in (client.put, client.get)]
    reads = [r for r in records if r.f == "get"]
    writes = [r for r in records if r.f == "put"]
    assert all(r.outcome == "ok" for r in reads), reads
    unknown = [r for r in writes if r.outcome != "ok"]
    assert all(r.outcome == "info" and r.status == 503 for r in unknown), unknown
    assert len(unknown) <= 2, unknown
    later = [client.put(key) for key in keys]
    assert all(r.outcome == "ok" for r in later), later
    slowest = max(r.elapsed_s for r in records + later)
    print(
        f"forwarding with 2 of 3 owners unreachable: {len(unknown)} write(s) of"
        f" {len(writes)} answered 'outcome unknown'; slowest request {slowest:.2f} s"
    )

    # Wholly unreachable: the request waits for the bound, the node stays responsive.
    cluster.network.partition([[forwarder.host], [o2.host]])
    blocked = Pending(lambda: client.put(keys[0]))
    ping_times = []
    other = cluster.client("local-on-s2", forwarder)
    local_ok = 0
    while not blocked.done:
        reply = http_json(forwarder.address, "GET", "/ping", timeout_s=2.0)
        assert reply.status == 200, reply
        ping_times.append(reply.elapsed_s)
        if other.put(local_key).outcome == "ok":
            local_ok += 1
        time.sleep(0.05)
    record = blocked.result(1.0)
    if record.result == OUTCOME_UNKNOWN_BODY:
        # The forward went out on a pooled connection to o2 that fell silent.
        assert record.status == 503, record
        assert record.elapsed_s <= SHORT_WAIT_S + TIMEOUT_MARGIN_S, record
    else:
        assert_dependency_timeout(record, SHORT_WAIT_S)
    assert record.outcome == "info"
    assert len(ping_times) >= 5 and max(ping_times) < 1.0, ping_times
    assert local_ok >= 5
    print(f"/ping while a forward was blocked: max {max(ping_times) * 1000:.1f} ms")
    read = client.get(keys[1])
    assert_dependency_timeout(read, SHORT_WAIT_S)
    assert read.outcome == "fail"

    cluster.network.heal()
    after = [client.put(keys[2]), client.get(keys[2])]
    assert all(r.outcome == "ok" for r in after), after
    cluster.finish()


def test_swizzle_isolate_one_by_one_heal_in_random_order(make_cluster: MakeCluster) -> None:
    """FoundationDB's swizzle: cut nodes off one by one (clients keep working on
    the keys of their node's shard, with some deletes), then reconnect them in a
    random order, under load. Everything converges; the checker accepts."""
    cluster = make_cluster(shards=(3, 3), causal_wait_s=5.0)
    rng = random.Random(20240601)
    assignments = local_assignments(cluster, cluster.nodes, "swizzle")
    # Two keys every client of a shard shares, for concurrent writes.
    for client, keys in assignments:
        keys += cluster.keys_for(client.node.shard, 2, "swizzle-shared")
    order = list(cluster.nodes)
    rng.shuffle(order)
    cut = order[:4]  # leave one replica of some shard connected for a while
    workload = Workload(put=0.5, get=0.35, list=0.05, delete=0.1, pause_s=0.005)
    with Load(assignments, workload, seed=7) as load:
        load.wait_for_progress(5)
        isolated: list[Node] = []
        for node in cut:
            isolated.append(node)
            set_isolated(cluster, isolated)
            load.wait_for_progress(8, timeout_s=60)
        reconnect = list(isolated)
        rng.shuffle(reconnect)
        for node in reconnect:
            isolated.remove(node)
            set_isolated(cluster, isolated)
            load.wait_for_progress(8, timeout_s=60)
    print(f"swizzle order {[n.name for n in cut]}, reconnect {[n.name for n in reconnect]}")
    print(f"swizzle: {load.tally.render()}")
    assert load.tally.errors == 0, load.tally.render()
    cluster.finish()


# --------------------------------------------------------------------------- degraded links


def test_loss_and_latency_between_all_nodes(make_cluster: MakeCluster) -> None:
    """5% loss and 50 +- 20 ms one-way delay on every node-to-node packet (client
    traffic is not shaped), under a load that forwards across shards. Lost
    packets only cost retransmissions: no request fails; replicas converge while
    the links are still impaired."""
    cluster = make_cluster(shards=(3, 3))
    assignments = []
    for node in cluster.nodes:
        keys = cluster.keys_for("s1", 3, f"lossy-{node.name}") + cluster.keys_for(
            "s2", 3, f"lossy-{node.name}"
        )
        assignments.append((cluster.client(f"p-{node.name}", node), keys))
    cluster.network.set_all_links(delay_ms=50, jitter_ms=20, loss_percent=5)
    try:
        with Load(assignments, Workload(pause_s=0.01), seed=3) as load:
            load.wait_for_progress(25, timeout_s=120)
        converged_s = cluster.wait_for_convergence(timeout_s=60)
    finally:
        cluster.network.clear_all_links()
    latencies = [r.elapsed_s for r in cluster.operations]
    forwarded = [
        r.elapsed_s
        for r in cluster.operations
        if r.key is not None and cluster.shard_of(r.key) != cluster.node(r.node).shard
    ]
    print(
        f"loss 5% + 50+-20 ms: {load.tally.render()}; latency p50 "
        f"{statistics.median(latencies) * 1000:.0f} ms p99 {percentile(latencies, 0.99) * 1000:.0f}"
        f" ms; forwarded p50 {statistics.median(forwarded) * 1000:.0f} ms p99 "
        f"{percentile(forwarded, 0.99) * 1000:.0f} ms; converged {converged_s:.2f} s after load"
    )
    assert load.tally.errors == 0, f"errors under loss: {load.tally.render()}"
    cluster.finish()


# --------------------------------------------------------------------------- process faults


def test_sigkill_and_restart_of_a_replica_mid_load(make_cluster: MakeCluster) -> None:
    """kill -9 one replica (durable sqlite storage) while clients write through
    it and through the others; restart it. Every write it acknowledged survives
    (checker + explicit check), it catches up, and everything converges."""
    cluster = make_cluster(shards=(3, 3), storage="sqlite")
    victim = cluster.nodes[1]
    assignments = local_assignments(cluster, cluster.nodes, "crash")
    survivors = [client.process for client, _ in assignments if client.node is not victim]
    victim_client = next(client for client, _ in assignments if client.node is victim)
    with Load(assignments, Workload(pause_s=0.005), seed=11) as load:
        load.wait_for_progress(15)
        cluster.kill(victim)
        load.wait_for_progress(15, processes=survivors)
        cluster.restart(victim)
        load.wait_for_progress(15)
    acknowledged_by_victim = [
        r
        for r in cluster.operations
        if r.node == victim.name and r.f == "put" and r.outcome == "ok"
    ]
    print(f"SIGKILL/restart: {load.tally.render()}; victim acked {len(acknowledged_by_victim)}")
    unexpected = [
        r for r in cluster.operations if r.outcome != "ok" and r.process != victim_client.process
    ]
    assert not unexpected, unexpected[:5]
    state = cluster.finish()
    # The victim's own last acknowledged write of each key is the final value,
    # unless a later put of that client whose answer was lost in the crash (info)
    # took effect after all: nobody else writes those keys.
    allowed: dict[str, set[str]] = {}
    for record in cluster.operations:
        if record.process != victim_client.process or record.f != "put":
            continue
        assert record.key is not None and record.value is not None
        if record.outcome == "ok":
            allowed[record.key] = {record.value}
        elif record.outcome == "info" and record.key in allowed:
            allowed[record.key].add(record.value)
    lost = {
        key: (state.get(key), values)
        for key, values in allowed.items()
        if state.get(key) not in values
    }
    assert not lost, f"final value vs acknowledged (or later unknown) writes: {lost}"


def test_sigstop_and_sigcont_of_a_replica_under_load(make_cluster: MakeCluster) -> None:
    """SIGSTOP one replica under load (its client's request hangs; the rest go
    on), SIGCONT it: the hung request completes, the replica catches up."""
    cluster = make_cluster(shards=(3, 3))
    victim = cluster.nodes[4]
    assignments = local_assignments(cluster, cluster.nodes, "pause")
    others = [client.process for client, _ in assignments if client.node is not victim]
    workload = Workload(put=0.5, get=0.35, list=0.05, delete=0.1, pause_s=0.005)
    with Load(assignments, workload, seed=5) as load:
        load.wait_for_progress(10)
        cluster.pause(victim)
        load.wait_for_progress(20, processes=others)
        cluster.resume(victim)
        load.wait_for_progress(10)
    print(f"SIGSTOP/SIGCONT: {load.tally.render()}")
    assert load.tally.errors == 0, load.tally.render()
    cluster.finish()


def test_acknowledged_writes_survive_sigkill_on_the_nodes_own_disk(
    make_cluster: MakeCluster,
) -> None:
    """A replica cut off from its peers acknowledges writes (so only its own disk
    has them), is killed with SIGKILL and restarted, still cut off: it serves
    every acknowledged write from its data directory; after the heal all
    replicas have them."""
    cluster = make_cluster(shards=(3,), storage="sqlite")
    victim, _, _ = cluster.nodes
    cluster.network.isolate(victim.host)
    client = cluster.client("writer", victim)
    keys = [f"durable-{number}" for number in range(20)]
    acknowledged = {}
    for key in keys:
        record = client.put(key)
        assert record.outcome == "ok", record
        assert record.value is not None
        acknowledged[key] = record.value
    cluster.kill(victim)
    cluster.restart(victim)
    assert cluster.listing(victim) == acknowledged
    reader = cluster.client("reader-after-restart", victim)
    reader.metadata = dict(client.metadata)  # the writer's session survives the crash too
    assert all(reader.get(key).result == value for key, value in acknowledged.items())
    cluster.network.heal()
    state = cluster.finish()
    assert {key: state.get(key) for key in keys} == acknowledged
