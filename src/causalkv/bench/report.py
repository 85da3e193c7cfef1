"""The benchmark report: one JSON-ready dict built from the workers' results.

Everything a reader (the terminal table, ``--json``, the plots, the
comparison script) needs is in it, including the merged latency histograms
in sparse form, so percentiles and curves can be recomputed later.
Latencies are reported in milliseconds, measured from just before a request
is written to just after its answer is parsed (so the generator's own time
is included, as it is for any client).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from causalkv.bench.config import PERCENTILES, BenchConfig
from causalkv.bench.connection import STATUS_CONNECTION_ERROR, STATUS_PROTOCOL_ERROR, STATUS_TIMEOUT
from causalkv.bench.drivers import StoreProtocol
from causalkv.bench.histogram import RELATIVE_ERROR, Histogram
from causalkv.bench.worker import OK_STATUSES, Interval, WorkerResult

REPORT_VERSION = 1
OPERATIONS = ("read", "update")
STATUS_NAMES = {
    STATUS_CONNECTION_ERROR: "connection-error",
    STATUS_TIMEOUT: "timeout",
    STATUS_PROTOCOL_ERROR: "protocol-error",
}


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, str(status))


def percentile_key(percent: float) -> str:
    return f"p{percent:g}"


def latency_summary_ms(histogram: Histogram) -> dict[str, float]:
    """mean, p50, p90, p99, p99.9 and max in milliseconds."""
    summary = {"mean": round(histogram.mean / 1e6, 4)}
    for percent in PERCENTILES:
        summary[percentile_key(percent)] = round(histogram.percentile(percent) / 1e6, 4)
    summary["max"] = round(histogram.maximum / 1e6, 4)
    return summary


def _merge_intervals(results: Iterable[WorkerResult]) -> dict[int, list[Interval]]:
    by_index: dict[int, list[Interval]] = {}
    for result in results:
        for interval in result.intervals:
            by_index.setdefault(interval.index, []).append(interval)
    return by_index


def _timeline(
    by_index: dict[int, list[Interval]], warmup: int, interval_s: float
) -> list[dict[str, Any]]:
    rows = []
    for index in sorted(by_index):
        parts = by_index[index]
        seconds = max(1e-9, max(p.ended_s - p.started_s for p in parts))
        row: dict[str, Any] = {
            "t_s": round((index - warmup) * interval_s, 3),
            "warmup": index < warmup,
        }
        for name in OPERATIONS:
            merged = Histogram()
            for part in parts:
                merged.merge(getattr(part, name))
            row[f"{name}_ops_s"] = round(merged.total_count / seconds, 1)
            row[f"{name}_p50_ms"] = round(merged.percentile(50) / 1e6, 4)
            row[f"{name}_p99_ms"] = round(merged.percentile(99) / 1e6, 4)
        row["errors"] = sum(part.errors for part in parts)
        rows.append(row)
    return rows


def _metadata_summary(
    config: BenchConfig, measured: list[Interval], results: list[WorkerResult]
) -> dict[str, Any]:
    """Mean and max metadata bytes clients sent, and what the largest token holds.

    ``bytes_per_extra_writer`` is the marginal cost of a writer: the largest
    token's size minus the size of the same token cut down to its first
    writer, divided by the writers removed (shard group headers included, so
    it is an upper bound on the per-writer cost).
    """
    total = sum(i.metadata_bytes_total for i in measured)
    requests = sum(i.metadata_requests for i in measured)
    largest = max((r.largest_metadata for r in results), key=len, default=b"{}")
    summary: dict[str, Any] = {
        "mean_bytes": round(total / requests, 1) if requests else 0.0,
        "max_bytes": max((i.metadata_bytes_max for i in measured), default=0),
        "largest_bytes": len(largest),
        "writers_in_largest": None,
        "single_writer_bytes": None,
        "bytes_per_extra_writer": None,
    }
    if config.protocol is not StoreProtocol.CAUSALKV or largest == b"{}":
        return summary
    from causalkv.core.token import Token, TokenError, decode_token, encode_token

    try:
        token = decode_token(json.loads(largest))
    except (TokenError, ValueError):
        return summary
    writers = len(token.clock)
    summary["writers_in_largest"] = writers
    if writers:
        first = min(token.clock)
        single = Token({first: token.clock[first]}, token.epoch_floor)
        single_bytes = len(json.dumps(encode_token(single), separators=(",", ":")))
        summary["single_writer_bytes"] = single_bytes
        if writers > 1:
            extra = (len(largest) - single_bytes) / (writers - 1)
            summary["bytes_per_extra_writer"] = round(extra, 1)
    return summary


def _lag_summary(lag_note: str, results: list[WorkerResult], measured_s: float) -> dict[str, Any]:
    lags = [r.lag for r in results if r.lag is not None]
    if not lags:
        return {"enabled": False, "note": lag_note}
    histogram = Histogram()
    from_ack = Histogram()
    for lag in lags:
        histogram.merge(lag.histogram)
        from_ack.merge(lag.histogram_from_ack)
    return {
        "enabled": True,
        "note": lag_note,
        "samples": sum(lag.sampled for lag in lags),
        "resolved": sum(lag.resolved for lag in lags),
        "unresolved": sum(lag.unresolved for lag in lags),
        "skipped_busy": sum(lag.skipped_busy for lag in lags),
        "probes_per_s": round(sum(lag.probes for lag in lags) / max(measured_s, 1e-9), 1),
        "probe_errors": sum(lag.probe_errors for lag in lags),
        "latency_ms": latency_summary_ms(histogram),
        "from_ack_ms": latency_summary_ms(from_ack),
        "histogram_ns": histogram.sparse(),
    }


def build_report(
    config: BenchConfig, lag_note: str, results: list[WorkerResult], started_wall: float
) -> dict[str, Any]:
    """Merge the workers' results into the report dict."""
    results = sorted(results, key=lambda r: r.worker)
    warmup = config.warmup_intervals
    by_index = _merge_intervals(results)
    measured = [i for index, parts in by_index.items() if index >= warmup for i in parts]
    measured_s = max((r.measured_wall_s for r in results), default=0.0)
    operations: dict[str, Any] = {}
    errors_by_status: dict[str, int] = {}
    total_ops = 0
    for name in OPERATIONS:
        histogram = Histogram()
        statuses: dict[int, int] = {}
        for interval in measured:
            histogram.merge(getattr(interval, name))
            for status, count in getattr(interval, f"{name}_statuses").items():
                statuses[status] = statuses.get(status, 0) + count
        errors = {status_name(s): c for s, c in statuses.items() if s not in OK_STATUSES}
        for status, count in errors.items():
            errors_by_status[status] = errors_by_status.get(status, 0) + count
        total_ops += histogram.total_count
        operations[name] = {
            "count": histogram.total_count,
            "throughput_ops_s": round(histogram.total_count / max(measured_s, 1e-9), 1),
            "latency_ms": latency_summary_ms(histogram),
            "statuses": {status_name(s): c for s, c in sorted(statuses.items())},
            "errors": sum(errors.values()),
            "histogram_ns": histogram.sparse(),
        }
    cpu = [
        round(100 * r.cpu_s / r.measured_wall_s, 1) if r.measured_wall_s else 0.0 for r in results
    ]
    return {
        "report_version": REPORT_VERSION,
        "tool": "causalkv bench",
        "label": config.label,
        "started_at": datetime.datetime.fromtimestamp(started_wall, datetime.UTC).isoformat(),
        "config": config_json(config),
        "measured_s": round(measured_s, 3),
        "throughput_ops_s": round(total_ops / max(measured_s, 1e-9), 1),
        "operations": operations,
        "errors": {"total": sum(errors_by_status.values()), "by_status": errors_by_status},
        "causal_metadata": _metadata_summary(config, measured, results),
        "replication_lag": _lag_summary(lag_note, results, measured_s),
        "generator": {
            "processes": config.processes,
            "cpus": list(config.cpus),
            "cpu_percent": cpu,
            "histogram_relative_error": RELATIVE_ERROR,
        },
        "preload": {
            "keys": config.keys if config.preload else 0,
            "seconds": round(max((r.preload_s for r in results), default=0.0), 3),
            "errors": sum(r.preload_errors for r in results),
        },
        "timeline": _timeline(by_index, warmup, config.interval_s),
    }


def config_json(config: BenchConfig) -> dict[str, Any]:
    return {
        "targets": list(config.targets),
        "protocol": config.protocol.value,
        "workload": config.workload_name,
        "keys": config.keys,
        "value_size": config.value_size,
        "clients": config.clients,
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "interval_s": config.interval_s,
        "distribution": config.distribution.value,
        "zipf_theta": config.zipf_theta,
        "lag_fraction": config.lag_fraction,
        "lag_samples_per_s_max": config.lag_samples_per_s_max,
        "processes": config.processes,
        "seed": config.seed,
    }


def histogram_of(report: dict[str, Any], operation: str) -> Histogram:
    """The merged latency histogram (ns) of ``operation`` from a report."""
    return Histogram.from_sparse(report["operations"][operation]["histogram_ns"])
