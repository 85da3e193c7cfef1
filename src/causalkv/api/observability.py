"""Seeing inside a node: ``GET /metrics`` (Prometheus), and the dashboard's routes.

``install(api)`` is the one entry point (called from ``Api.__init__``). It adds:

* ``GET /metrics``: the Prometheus text format (OpenMetrics when the scraper asks
  for it), from a ``CollectorRegistry`` of this node's own, never the global one;
* an observer of every HTTP request (counts and latency per method, route and
  status);
* the dashboard's routes (``dashboard.py``), and the view epoch in log records.

Cost on the hot path: the request observer does one dict lookup, one bisect and
three increments per request (about half a microsecond), with no lock: the
observer and the scrape both run on the node's event loop. Everything else is
read from the node's state when scraped, by a custom collector, so serving
requests pays nothing for it. The metric reference is ``docs/observability.md``.

Replication lag, as defined here (per shard peer): the age of the oldest write
this node accepted that the peer's last reported clock does not cover yet, 0
when it covers them all. Peers report their clocks in anti-entropy requests
(every ``anti_entropy_interval_s``, round-robin over a shard's replicas), so the
figure is an upper bound that includes that reporting delay. Write times are
noted when a request completes, at 10 ms resolution.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder

from causalkv import __version__
from causalkv.api.http import Receive, Scope, Send, header, send_response
from causalkv.core.clock import Clock
from causalkv.core.keystore import KeyStore
from causalkv.core.writer import Writer
from causalkv.runtime import logs

if TYPE_CHECKING:
    from causalkv.api.app import Api
    from causalkv.runtime.node import NodeRuntime

log = logging.getLogger("causalkv.observability")

CORS_HEADERS = [(b"access-control-allow-origin", b"*"), (b"cache-control", b"no-store")]

REQUEST_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
)  # fmt: skip
"""Request latency buckets: sub-millisecond local reads up to the 20 s causal wait bound."""
WAIT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip

METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"})
"""Methods kept as label values; any other method is counted as ``other``."""
CLIENT_ROUTES = frozenset({"/data/{key}", "/kvs/data/{key}", "/data", "/kvs/data"})
PEER_ROUTE = "/kvs/internal/sync"

CAUSAL_WAIT_HOOK = "on_causal_wait"
"""``NodeRuntime.on_causal_wait(seconds, timed_out)``, called when a request that waited
for its causal dependencies is answered (see docs/observability.md). Looked up by name
so this module works with runtimes that do not have the hook yet."""

EXACT_BYTES_KEYS_MAX = 20_000
"""Up to this many keys, value bytes are summed over the whole store."""
SAMPLE_KEYS = 2_000
SAMPLE_WALK_KEYS_MAX = 1_000_000
"""Beyond this many keys, the sample is drawn from the first million only (bounded pause)."""


class Histogram:
    """A histogram for one label set: per-bucket counts, count and sum. Not thread-safe."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: ``le`` and the count of observations at most that."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", self.count))
        return buckets

    def merge_into(self, target: list[int]) -> None:
        for index, count in enumerate(self.counts):
            target[index] += count


class RequestMetrics:
    """Counts and latencies of HTTP requests by (method, route, status)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, int], Histogram] = {}

    def series_for(self, method: str, route: str, status: int) -> Histogram:
        if method not in METHODS:
            method = "other"
        return self.series.setdefault((method, route, status), Histogram(REQUEST_BUCKETS_S))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self.series.get((method, route, status)) or self.series_for(method, route, status)
        series.observe(seconds)


class CausalWaitMetrics:
    """Durations of causal waits, fed by the runtime's ``on_causal_wait`` hook."""

    def __init__(self) -> None:
        self.served = Histogram(WAIT_BUCKETS_S)
        self.timed_out = Histogram(WAIT_BUCKETS_S)
        self.hooked = False

    def observe(self, seconds: float, timed_out: bool) -> None:
        (self.timed_out if timed_out else self.served).observe(seconds)


class WriteTimeline:
    """When this node's own writes were accepted, as (last sequence number, time) checkpoints.

    A new checkpoint starts at most every ``resolution_s``; a checkpoint keeps the time
    it started, so ages are overestimated by less than that. Checkpoints every peer has
    confirmed are dropped; past ``checkpoints_max`` every other one is merged (keeping
    the older time), so memory stays bounded while a peer is down.
    """

    def __init__(self, resolution_s: float = 0.01, checkpoints_max: int = 50_000) -> None:
        self.resolution_s = resolution_s
        self.checkpoints_max = checkpoints_max
        self.writer: Writer | None = None
        self.last_seq = 0
        self.seqs: list[int] = []
        self.times: list[float] = []

    def note(self, writer: Writer | None, seq: int, now_s: float) -> None:
        if writer != self.writer:
            self.writer = writer
            self.seqs.clear()
            self.times.clear()
            self.last_seq = seq
            if writer is not None and seq > 0:
                # Writes from before tracking began: counted from now (a lower bound).
                self.seqs.append(seq)
                self.times.append(now_s)
            return
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        if self.times and now_s - self.times[-1] < self.resolution_s:
            self.seqs[-1] = seq
        else:
            self.seqs.append(seq)
            self.times.append(now_s)
            if len(self.seqs) > self.checkpoints_max:
                self._thin()

    def _thin(self) -> None:
        # Merge pairs: the later sequence number with the earlier time (ages stay upper bounds).
        seqs = self.seqs[1::2]
        times = self.times[0::2][: len(seqs)]
        if len(self.seqs) % 2:
            seqs.append(self.seqs[-1])
            times.append(self.times[-1])
        self.seqs, self.times = seqs, times

    def oldest_uncovered_s(self, covered_seq: int) -> float | None:
        """Acceptance time of the oldest write after ``covered_seq``, None if there is none."""
        index = bisect.bisect_right(self.seqs, covered_seq)
        if index >= len(self.seqs):
            return None
        return self.times[index]

    def forget_through(self, covered_seq: int) -> None:
        index = bisect.bisect_right(self.seqs, covered_seq)
        if index:
            del self.seqs[:index]
            del self.times[:index]


@dataclass(slots=True)
class PeerLag:
    lag_s: float
    unacknowledged: int
    report_age_s: float | None
    reported: bool


class PeerReports:
    """When each shard peer last reported its clock (anti-entropy requests)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[Clock, float]] = {}

    def note(self, peer_known: Mapping[str, Clock], now_s: float) -> None:
        last = self.last
        for peer, clock in peer_known.items():
            seen = last.get(peer)
            if seen is None or seen[0] is not clock:
                last[peer] = (clock, now_s)

    def prune(self, peer_known: Mapping[str, Clock]) -> None:
        for peer in [p for p in self.last if p not in peer_known]:
            del self.last[peer]


class ValueBytes:
    """Approximate bytes (characters) of the keys and values this node holds.

    Uses ``KeyStore.value_bytes`` when the store keeps that count; otherwise sums the
    whole store when it is small, or extrapolates from an evenly spaced sample, and
    reuses the figure (scaled by the number of keys) for a while so scrapes stay cheap.
    """

    def __init__(self) -> None:
        self.value = 0
        self.keys = 0
        self.exact = True
        self.computed_s = float("-inf")
        self.valid_for_s = 0.0

    def get(self, store: KeyStore, now_s: float) -> tuple[int, bool]:
        counted: Any = getattr(store, "value_bytes", None)
        if isinstance(counted, int):
            return counted, True
        keys = len(store)
        if now_s - self.computed_s < self.valid_for_s and self.keys:
            if keys == self.keys:
                return self.value, self.exact
            return round(self.value * keys / self.keys), False  # scaled to the current key count
        started = time.perf_counter()
        self.keys = keys
        self.value, self.exact = estimate_value_bytes(store)
        elapsed = time.perf_counter() - started
        self.computed_s = now_s
        # Reuse the figure long enough to keep the amortised cost under 0.1 % of the event loop.
        self.valid_for_s = min(60.0, elapsed * 1000)
        return self.value, self.exact


def _entry_bytes(key: str, store: KeyStore) -> int:
    entry = store.entry(key)
    if entry is None:
        return 0
    return len(key) + sum(0 if version.value is None else len(version.value) for version in entry)


def estimate_value_bytes(store: KeyStore) -> tuple[int, bool]:
    """(bytes, exact): exact up to ``EXACT_BYTES_KEYS_MAX`` keys, sampled beyond."""
    keys = len(store)
    if keys <= EXACT_BYTES_KEYS_MAX:
        return sum(_entry_bytes(key, store) for key in list(store.keys())), True
    walked = min(keys, SAMPLE_WALK_KEYS_MAX)
    step = max(1, walked // SAMPLE_KEYS)
    sample = list(itertools.islice(store.keys(), 0, walked, step))
    if not sample:
        return 0, False
    mean = sum(_entry_bytes(key, store) for key in sample) / len(sample)
    return round(mean * keys), False


class Observability:
    """Per-node metrics state and the collector that exposes it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.runtime: NodeRuntime = api.runtime
        self.requests = RequestMetrics()
        self._series = self.requests.series
        self.causal_waits = CausalWaitMetrics()
        self.writes = WriteTimeline()
        self.reports = PeerReports()
        self.value_bytes = ValueBytes()
        self.view_history: deque[dict[str, object]] = deque(maxlen=20)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # -- feeding --------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """The ``Api`` observer: runs after every request, so it is kept to a few operations."""
        series = self._series.get((method, route, status))
        if series is None:
            series = self.requests.series_for(method, route, status)
        series.counts[bisect.bisect_left(REQUEST_BUCKETS_S, seconds)] += 1
        series.count += 1
        series.sum += seconds
        replica = self.runtime.replica
        writes = self.writes
        if replica.writer_seq != writes.last_seq or replica.writer is not writes.writer:
            writes.note(replica.writer, replica.writer_seq, time.monotonic())
        if route == PEER_ROUTE and replica.peer_known:
            self.reports.note(replica.peer_known, time.monotonic())

    def on_view_change(self, epoch: int) -> None:
        replica = self.runtime.replica
        view = replica.view
        shard = None
        if view is not None and replica.shard_index is not None:
            shard = view.shards[replica.shard_index].name
        self.view_history.append(
            {
                "epoch": epoch,
                "at": time.time(),
                "shard": shard,
                "shards": 0 if view is None else len(view.shards),
                "nodes": 0 if view is None else sum(len(s.nodes) for s in view.shards),
            }
        )
        log.info(
            "serving view epoch %d (%s)",
            epoch,
            "not a member" if shard is None else f"shard {shard}",
            extra={"epoch": epoch},
        )

    # -- reading --------------------------------------------------------------------------------

    def replication_lag(self, now_s: float) -> dict[str, PeerLag]:
        """Per shard peer: lag of this node's own writes (see the module docstring)."""
        replica = self.runtime.replica
        self.writes.note(replica.writer, replica.writer_seq, now_s)
        self.reports.note(replica.peer_known, now_s)
        self.reports.prune(replica.peer_known)
        writer = replica.writer
        peers = replica.shard_peers()
        result: dict[str, PeerLag] = {}
        covered_all: int | None = None
        for peer in peers:
            clock = replica.peer_known.get(peer)
            covered = 0 if clock is None or writer is None else clock.get(writer, 0)
            covered_all = covered if covered_all is None else min(covered_all, covered)
            oldest = self.writes.oldest_uncovered_s(covered)
            report = self.reports.last.get(peer)
            result[peer] = PeerLag(
                lag_s=0.0 if oldest is None else max(0.0, now_s - oldest),
                unacknowledged=max(0, replica.writer_seq - covered) if writer is not None else 0,
                report_age_s=None if report is None else now_s - report[1],
                reported=clock is not None,
            )
        if covered_all:
            self.writes.forget_through(covered_all)
        return result

    def shard_name(self) -> str | None:
        replica = self.runtime.replica
        if replica.view is None or replica.shard_index is None:
            return None
        return replica.view.shards[replica.shard_index].name

    def summary(self) -> dict[str, object]:
        """What the dashboard needs beyond ``/status``: request and wait histograms, lag."""
        now_s = time.monotonic()
        groups = {name: [0] * (len(REQUEST_BUCKETS_S) + 1) for name in ("client", "peer", "other")}
        totals = {name: {"count": 0, "errors": 0, "sum_s": 0.0} for name in groups}
        routes: list[dict[str, object]] = []
        for (method, route, status), series in self.requests.series.items():
            group = (
                "client" if route in CLIENT_ROUTES else "peer" if route == PEER_ROUTE else "other"
            )
            series.merge_into(groups[group])
            total = totals[group]
            total["count"] += series.count
            total["sum_s"] += series.sum
            if status >= 500 or status == 0:
                total["errors"] += series.count
            routes.append(
                {"method": method, "route": route, "status": status, "count": series.count}
            )
        replica = self.runtime.replica
        store_bytes, exact = self.value_bytes.get(replica.store, now_s)
        lag = self.replication_lag(now_s)
        waits = self.causal_waits
        return {
            "monotonic_s": now_s,
            "in_flight": self.api.in_flight,
            "latency_bounds_s": list(REQUEST_BUCKETS_S),
            "requests": {
                name: {**totals[name], "buckets": groups[name]}
                for name in ("client", "peer", "other")
            },
            "routes": routes,
            "causal_waits": {
                "total": replica.counters.causal_waits,
                "timeouts": replica.counters.causal_wait_timeouts,
                "waiting": len(replica.waiters),
                "oldest_s": self.oldest_wait_s(now_s),
                "measured": waits.hooked,
                "served_count": waits.served.count,
                "served_sum_s": waits.served.sum,
            },
            "replication": {
                peer: {
                    "lag_s": round(item.lag_s, 4),
                    "unacknowledged": item.unacknowledged,
                    "report_age_s": None
                    if item.report_age_s is None
                    else round(item.report_age_s, 3),
                    "reported": item.reported,
                }
                for peer, item in lag.items()
            },
            "value_bytes": store_bytes,
            "value_bytes_exact": exact,
            "storage": {
                "commit_seconds_total": self.runtime.storage.stats.commit_seconds_total,
                "last_batch_count": self.runtime.storage.stats.last_batch_count,
            },
            "view_history": list(self.view_history),
        }

    def oldest_wait_s(self, now_s: float) -> float:
        """Age of the oldest request waiting for causal dependencies (0 when none)."""
        waiters = self.runtime.replica.waiters
        if not waiters:
            return 0.0
        wait_s = self.runtime.replica.settings.causal_wait_s
        # Waiters are kept in arrival order and share one bound: the first is the oldest.
        started = waiters[0].deadline_s - wait_s
        return max(0.0, now_s - started)


class NodeCollector:
    """Reads the node's state at scrape time (a ``prometheus_client`` custom collector)."""

    def __init__(self, observability: Observability) -> None:
        self.observability = observability

    def collect(self) -> Iterator[Metric]:
        o = self.observability
        now_s = time.monotonic()
        yield from self._requests(o)
        yield from self._node(o, now_s)
        yield from self._counters(o)
        yield from self._causal_waits(o, now_s)
        yield from self._replication(o, now_s)
        yield from self._store(o, now_s)
        yield from self._storage(o)
        yield from self._view(o, now_s)
        yield from self._peers(o, now_s)

    @staticmethod
    def _requests(o: Observability) -> Iterable[Metric]:
        total = CounterMetricFamily(
            "causalkv_http_requests",
            "HTTP requests served, by method, route and status (0: the client went away).",
            labels=["method", "route", "status"],
        )
        duration = HistogramMetricFamily(
            "causalkv_http_request_duration_seconds",
            "Time from receiving a request to its last response byte, by method, route and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), series in sorted(o.requests.series.items()):
            labels = [method, route, str(status)]
            total.add_metric(labels, series.count)
            duration.add_metric(labels, series.cumulative(), series.sum)
        yield total
        yield duration
        yield GaugeMetricFamily(
            "causalkv_http_requests_in_flight",
            "HTTP requests being served right now.",
            value=o.api.in_flight,
        )

    @staticmethod
    def _node(o: Observability, now_s: float) -> Iterable[Metric]:
        runtime = o.runtime
        info = InfoMetricFamily("causalkv_node", "This node: id, address, version, storage engine.")
        info.add_metric(
            [],
            {
                "node_id": runtime.settings.node_id,
                "address": runtime.replica.self_address or "",
                "version": __version__,
                "storage": runtime.settings.storage,
                "cluster": runtime.settings.cluster_name,
            },
        )
        yield info
        yield GaugeMetricFamily(
            "causalkv_recovery_seconds",
            "Time the node took to load its data at start-up.",
            value=runtime.recovery_s,
        )
        yield GaugeMetricFamily(
            "causalkv_node_failed",
            "1 when the replica state machine raised and the node stopped serving.",
            value=0 if runtime.failure is None else 1,
        )

    @staticmethod
    def _counters(o: Observability) -> Iterable[Metric]:
        counters = o.runtime.replica.counters
        statistics = o.runtime.statistics
        simple = [
            ("causalkv_forwarded_requests", "Client requests relayed to a replica of another shard.",
             statistics.forwarded_requests),
            ("causalkv_forward_failures", "Relay attempts that failed (the next replica is tried).",
             statistics.forward_failures),
            ("causalkv_peer_calls_rejected", "Malformed node-to-node calls refused.",
             statistics.peer_calls_rejected),
            ("causalkv_writes_accepted", "Writes (puts and deletes) this node accepted as their writer.",
             counters.writes_accepted),
            ("causalkv_versions_applied_from_peers",
             "Versions from shard peers (pushes and anti-entropy) that changed this node's store.",
             counters.versions_applied_from_peers),
            ("causalkv_anti_entropy_rounds", "Anti-entropy requests this node sent to a shard peer.",
             counters.anti_entropy_rounds),
            ("causalkv_versions_repaired",
             "Versions anti-entropy brought that the pushes had not delivered.",
             counters.versions_repaired),
            ("causalkv_peer_input_rejected", "Versions or clocks from peers refused as invalid.",
             counters.peer_input_rejected),
            ("causalkv_tombstones_collected", "Deleted keys forgotten once every replica had seen the delete.",
             counters.tombstones_collected),
            ("causalkv_keys_transferred_out", "Versions sent to new owners in view-change hand-offs.",
             counters.keys_transferred_out),
            ("causalkv_keys_transferred_in", "Versions received from old owners in view-change hand-offs.",
             counters.keys_transferred_in),
            ("causalkv_stale_versions_dropped",
             "Stale copies (from abandoned changes) dropped because their owner's hand-off superseded them.",
             counters.stale_versions_dropped),
            ("causalkv_view_changes", "Views this node started serving.", counters.view_changes),
        ]  # fmt: skip
        for name, documentation, value in simple:
            yield CounterMetricFamily(name, documentation, value=value)

    @staticmethod
    def _causal_waits(o: Observability, now_s: float) -> Iterable[Metric]:
        replica = o.runtime.replica
        yield CounterMetricFamily(
            "causalkv_causal_waits",
            "Requests that had to wait for versions their causal metadata depends on.",
            value=replica.counters.causal_waits,
        )
        yield CounterMetricFamily(
            "causalkv_causal_wait_timeouts",
            "Causal waits that reached the bound (answered 503/500 'timed out ...').",
            value=replica.counters.causal_wait_timeouts,
        )
        yield GaugeMetricFamily(
            "causalkv_causal_waiting_requests",
            "Requests waiting for causal dependencies right now.",
            value=len(replica.waiters),
        )
        yield GaugeMetricFamily(
            "causalkv_causal_wait_oldest_seconds",
            "How long the oldest waiting request has waited (0 when none waits).",
            value=o.oldest_wait_s(now_s),
        )
        waits = o.causal_waits
        if waits.hooked:
            histogram = HistogramMetricFamily(
                "causalkv_causal_wait_duration_seconds",
                "How long requests waited for their causal dependencies, by outcome.",
                labels=["outcome"],
            )
            histogram.add_metric(["served"], waits.served.cumulative(), waits.served.sum)
            histogram.add_metric(["timeout"], waits.timed_out.cumulative(), waits.timed_out.sum)
            yield histogram

    @staticmethod
    def _replication(o: Observability, now_s: float) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "causalkv_replication_lag_seconds",
            "Age of the oldest write this node accepted that the peer's last reported clock does"
            " not cover (0: the peer has confirmed every write).",
            labels=["peer"],
        )
        pending = GaugeMetricFamily(
            "causalkv_replication_unacknowledged_writes",
            "This node's writes the peer's last reported clock does not cover.",
            labels=["peer"],
        )
        report_age = GaugeMetricFamily(
            "causalkv_replication_peer_report_age_seconds",
            "Time since the peer last reported its clock (anti-entropy request).",
            labels=["peer"],
        )
        for peer, item in sorted(o.replication_lag(now_s).items()):
            lag.add_metric([peer], item.lag_s)
            pending.add_metric([peer], item.unacknowledged)
            if item.report_age_s is not None:
                report_age.add_metric([peer], item.report_age_s)
        yield lag
        yield pending
        yield report_age

    @staticmethod
    def _store(o: Observability, now_s: float) -> Iterable[Metric]:
        replica = o.runtime.replica
        shard = o.shard_name() or "none"
        store = replica.store
        gauges = [
            ("causalkv_shard_keys", "Keys this node holds (live and deleted), by its shard.", len(store)),
            ("causalkv_shard_live_keys", "Keys whose visible version is a value.", store.live_keys),
            ("causalkv_shard_tombstones", "Deleted keys not yet collected.", len(store.tombstone_keys)),
        ]  # fmt: skip
        for name, documentation, value in gauges:
            family = GaugeMetricFamily(name, documentation, labels=["shard"])
            family.add_metric([shard], value)
            yield family
        value_bytes, exact = o.value_bytes.get(store, now_s)
        family = GaugeMetricFamily(
            "causalkv_shard_value_bytes",
            "Approximate size of the keys and values (every version) this node holds, in characters.",
            labels=["shard"],
        )
        family.add_metric([shard], value_bytes)
        yield family
        yield GaugeMetricFamily(
            "causalkv_shard_value_bytes_exact",
            "1 when causalkv_shard_value_bytes was counted exactly, 0 when estimated from a sample.",
            value=1 if exact else 0,
        )
        yield GaugeMetricFamily(
            "causalkv_lamport_clock", "This node's Lamport clock.", value=store.lamport
        )

    @staticmethod
    def _storage(o: Observability) -> Iterable[Metric]:
        stats = o.runtime.storage.stats
        engine = o.runtime.settings.storage
        commits = SummaryMetricFamily(
            "causalkv_storage_commit_duration_seconds",
            "Storage commits (one transaction, fsync included) and the time they took.",
            labels=["engine"],
        )
        commits.add_metric([engine], stats.commits, stats.commit_seconds_total)
        yield commits
        batches = CounterMetricFamily(
            "causalkv_storage_batches",
            "Persist batches (one per replica step that changed state) handed to storage; with"
            " SQLite, rate(batches) / rate(commit count) is the mean group-commit size.",
            labels=["engine"],
        )
        batches.add_metric([engine], stats.batches)
        yield batches
        keys = CounterMetricFamily(
            "causalkv_storage_keys_written",
            "Keys written (or deleted) by storage commits.",
            labels=["engine"],
        )
        keys.add_metric([engine], stats.keys_written)
        yield keys
        last = GaugeMetricFamily(
            "causalkv_storage_last_commit_seconds",
            "Duration of the latest storage commit.",
            labels=["engine"],
        )
        last.add_metric([engine], stats.last_commit_seconds)
        yield last
        last_batches = GaugeMetricFamily(
            "causalkv_storage_last_commit_batches",
            "Persist batches in the latest storage commit.",
            labels=["engine"],
        )
        last_batches.add_metric([engine], stats.last_batch_count)
        yield last_batches

    @staticmethod
    def _view(o: Observability, now_s: float) -> Iterable[Metric]:
        replica = o.runtime.replica
        view = replica.view
        yield GaugeMetricFamily(
            "causalkv_view_epoch",
            "Epoch of the view this node serves (0: none installed).",
            value=0 if view is None else view.epoch,
        )
        yield GaugeMetricFamily(
            "causalkv_view_highest_epoch",
            "Highest view epoch this node has heard of.",
            value=replica.highest_epoch,
        )
        yield GaugeMetricFamily(
            "causalkv_view_member",
            "1 when this node replicates a shard of the view it serves.",
            value=0 if replica.shard_index is None else 1,
        )
        yield GaugeMetricFamily(
            "causalkv_view_shards",
            "Shards in the served view.",
            value=0 if view is None else len(view.shards),
        )
        yield GaugeMetricFamily(
            "causalkv_view_nodes",
            "Nodes in the served view.",
            value=0 if view is None else sum(len(shard.nodes) for shard in view.shards),
        )
        change = replica.change
        yield GaugeMetricFamily(
            "causalkv_view_change_in_progress",
            "1 while this node takes part in a view change not committed yet.",
            value=0 if change is None else 1,
        )
        yield GaugeMetricFamily(
            "causalkv_view_change_age_seconds",
            "How long the view change in progress has been going (0 when none).",
            value=0.0 if change is None else max(0.0, now_s - change.started_s),
        )
        progress = replica.handoff_progress
        handoff = [
            ("causalkv_handoff_epoch", "Epoch of the view change this node last handed keys off for.",
             progress.target[0]),
            ("causalkv_handoff_transfers", "Hand-off transfers started for that change.",
             progress.transfers_total),
            ("causalkv_handoff_transfers_acked", "Hand-off transfers the new owners acknowledged.",
             progress.transfers_acked),
            ("causalkv_handoff_versions", "Versions to hand off for that change.", progress.versions_total),
            ("causalkv_handoff_versions_acked", "Versions handed off and acknowledged.",
             progress.versions_acked),
            ("causalkv_handoff_bytes", "Key and value bytes to hand off for that change.",
             progress.bytes_total),
            ("causalkv_handoff_bytes_acked", "Key and value bytes handed off and acknowledged.",
             progress.bytes_acked),
        ]  # fmt: skip
        for name, documentation, value in handoff:
            yield GaugeMetricFamily(name, documentation, value=value)
        ratio = 1.0
        if progress.versions_total:
            ratio = progress.versions_acked / progress.versions_total
        yield GaugeMetricFamily(
            "causalkv_handoff_progress_ratio",
            "Share of that change's versions handed off and acknowledged (1: done or nothing to send).",
            value=ratio,
        )

    @staticmethod
    def _peers(o: Observability, now_s: float) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "causalkv_peer_up",
            "1 when the latest message to the peer was delivered, 0 after a failure.",
            labels=["peer"],
        )
        failures = GaugeMetricFamily(
            "causalkv_peer_consecutive_failures",
            "Failed deliveries to the peer since the last success.",
            labels=["peer"],
        )
        last_success = GaugeMetricFamily(
            "causalkv_peer_last_success_age_seconds",
            "Time since a message to the peer was last delivered.",
            labels=["peer"],
        )
        sent = CounterMetricFamily(
            "causalkv_peer_messages_sent",
            "Protocol messages delivered to the peer.",
            labels=["peer"],
        )
        dropped = CounterMetricFamily(
            "causalkv_peer_messages_dropped",
            "Protocol messages to the peer dropped after a failed delivery or a full queue.",
            labels=["peer"],
        )
        sent_bytes = CounterMetricFamily(
            "causalkv_peer_sent_bytes", "Envelope bytes delivered to the peer.", labels=["peer"]
        )
        for peer, health in sorted(o.runtime.transport.health.items()):
            up.add_metric([peer], 1 if health.reachable else 0)
            failures.add_metric([peer], health.consecutive_failures)
            if health.last_success_s:
                last_success.add_metric([peer], max(0.0, now_s - health.last_success_s))
            sent.add_metric([peer], health.messages_sent)
            dropped.add_metric([peer], health.messages_dropped)
            sent_bytes.add_metric([peer], health.bytes_sent)
        yield from (up, failures, last_success, sent, dropped, sent_bytes)


def metrics_route(observability: Observability) -> Callable[[Scope, Receive, Send], Any]:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        accept = (header(scope, b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(observability.registry)
        headers = [(b"content-type", content_type.encode()), *CORS_HEADERS]
        await send_response(send, 200, body, headers)

    return handle


def install(api: Api) -> None:
    """Register ``/metrics``, the request observer, the dashboard and the runtime hooks."""
    from causalkv.api import dashboard

    observability = Observability(api)
    runtime = api.runtime
    api.observers.append(observability.observe_request)
    api.extra_routes[("GET", "/metrics")] = metrics_route(observability)
    dashboard.install(api, observability)

    previous_view_hook = runtime.on_view_change

    def on_view_change(epoch: int) -> None:
        observability.on_view_change(epoch)
        if previous_view_hook is not None:
            previous_view_hook(epoch)

    runtime.on_view_change = on_view_change

    if hasattr(runtime, CAUSAL_WAIT_HOOK):
        previous_wait_hook: Any = getattr(runtime, CAUSAL_WAIT_HOOK)

        def on_causal_wait(seconds: float, timed_out: bool) -> None:
            observability.causal_waits.observe(seconds, timed_out)
            if previous_wait_hook is not None:
                previous_wait_hook(seconds, timed_out)

        setattr(runtime, CAUSAL_WAIT_HOOK, on_causal_wait)
        observability.causal_waits.hooked = True

    def epoch() -> int | None:
        view = runtime.replica.view
        return None if view is None else view.epoch

    logs.set_epoch_source(epoch)
