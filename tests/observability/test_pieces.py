"""The observability pieces on their own: histograms, the write timeline behind the
replication lag, the value-bytes estimate, and the structured log format."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from dataclasses import dataclass

import pytest

from causalkv.api.observability import (
    EXACT_BYTES_KEYS_MAX,
    Histogram,
    RequestMetrics,
    WriteTimeline,
    estimate_value_bytes,
)
from causalkv.core.keystore import KeyStore, Version
from causalkv.core.writer import Writer, make_writer
from causalkv.runtime import logs

WRITER = make_writer(1, 7, 0, b"\x01" * 6)
OTHER_WRITER = make_writer(2, 7, 0, b"\x01" * 6)


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert histogram.count == 5
    assert abs(histogram.sum - 4.65) < 1e-9


def test_request_labels_stay_bounded() -> None:
    metrics = RequestMetrics()
    for method in ("GET", "BREW", "WHEN", "GET"):
        metrics.observe(method, "/ping", 200, 0.001)
    assert sorted(metrics.series) == [("GET", "/ping", 200), ("other", "/ping", 200)]
    assert metrics.series[("other", "/ping", 200)].count == 2


def test_write_timeline_ages_the_oldest_unconfirmed_write() -> None:
    timeline = WriteTimeline(resolution_s=0.01)
    timeline.note(WRITER, 0, 100.0)
    timeline.note(WRITER, 1, 100.0)
    timeline.note(WRITER, 3, 100.005)  # same checkpoint: keeps the older time
    timeline.note(WRITER, 4, 101.0)
    timeline.note(WRITER, 9, 102.0)
    assert timeline.oldest_uncovered_s(0) == 100.0
    assert timeline.oldest_uncovered_s(2) == 100.0  # seq 3 was accepted by 100.005 at the latest
    assert timeline.oldest_uncovered_s(3) == 101.0
    assert timeline.oldest_uncovered_s(8) == 102.0
    assert timeline.oldest_uncovered_s(9) is None
    timeline.forget_through(3)
    assert timeline.seqs == [4, 9]
    timeline.note(OTHER_WRITER, 0, 103.0)  # a new view: a new writer starts from scratch
    assert timeline.seqs == [] and timeline.oldest_uncovered_s(0) is None


def test_write_timeline_stays_bounded_and_never_underestimates() -> None:
    timeline = WriteTimeline(resolution_s=0.0, checkpoints_max=64)
    accepted: dict[int, float] = {}
    for seq in range(1, 5001):
        now = seq * 0.5
        timeline.note(WRITER, seq, now)
        accepted[seq] = now
    assert len(timeline.seqs) <= 64
    rng = random.Random(3)
    for _ in range(300):
        covered = rng.randrange(0, 5000)
        oldest = timeline.oldest_uncovered_s(covered)
        assert oldest is not None
        assert oldest <= accepted[covered + 1]  # the age is an upper bound


def _writer_for(index: int) -> Writer:
    return make_writer(1, 1, 0, index.to_bytes(6, "big"))


def test_value_bytes_exact_when_small_and_close_when_sampled() -> None:
    store = KeyStore()
    writer = _writer_for(1)
    store.apply("alpha", Version(writer, 1, 1, {}, "12345"))
    store.apply("beta", Version(writer, 2, 2, {}, None))
    assert estimate_value_bytes(store) == (len("alpha") + 5 + len("beta"), True)
    big = KeyStore()
    total = 0
    rng = random.Random(5)
    for seq in range(1, EXACT_BYTES_KEYS_MAX * 2):
        key = f"key-{seq}"
        value = "v" * rng.randrange(10, 200)
        big.apply(key, Version(writer, seq, seq, {}, value))
        total += len(key) + len(value)
    estimate, exact = estimate_value_bytes(big)
    assert not exact
    assert abs(estimate - total) / total < 0.05


def _format(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    logs.ContextFilter().filter(record)
    return formatter.format(record)


def test_json_logs_carry_node_epoch_request_id_and_extras() -> None:
    logs.set_epoch_source(lambda: 4)
    token = logs.bind_request_id("r-17")
    try:
        record = logging.LogRecord(
            "causalkv.test", logging.INFO, __file__, 1, "hello %s", ("x",), None
        )
        record.shard = "s2"
        line = json.loads(_format(logs.JsonFormatter("n3"), record))
    finally:
        logs.reset_request_id(token)
        logs.set_epoch_source(None)
    assert line["node"] == "n3"
    assert line["message"] == "hello x"
    assert line["level"] == "info"
    assert line["epoch"] == 4
    assert line["request_id"] == "r-17"
    assert line["shard"] == "s2"
    assert line["time"].endswith("Z")


def test_log_context_is_optional_and_never_breaks_logging() -> None:
    def broken() -> int | None:
        raise RuntimeError("no view yet")

    logs.set_epoch_source(broken)
    try:
        record = logging.LogRecord("causalkv.test", logging.WARNING, __file__, 1, "plain", (), None)
        line = json.loads(_format(logs.JsonFormatter("n1"), record))
        text = _format(logs.TextFormatter("n1"), record)
    finally:
        logs.set_epoch_source(None)
    assert "epoch" not in line and "request_id" not in line
    assert " n1 WARNING causalkv.test: plain" in text


@dataclass
class _Settings:
    node_id: str = "7"
    log_level: str = "warning"


def test_configured_handler_writes_json_lines_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure_logging(_Settings())  # type: ignore[arg-type]
        logging.getLogger("causalkv.test").info("not shown at WARNING")
        logging.getLogger("causalkv.test").warning("shown")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["shown"]
    assert lines[0]["node"] == "7"
