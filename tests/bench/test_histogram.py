"""The benchmark histogram: percentiles against a sorted-array reference.

Why: every latency figure in docs/benchmarks.md comes from this histogram, so
its percentiles must be within the documented relative error of the exact
nearest-rank percentile, for any data, and merging must equal recording.
"""

from __future__ import annotations

import math
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from causalkv.bench.histogram import (
    BUCKETS,
    RELATIVE_ERROR,
    VALUE_MAX,
    Histogram,
    bucket_bounds,
    bucket_index,
)

values = st.integers(min_value=0, max_value=VALUE_MAX)
# latencies: mostly 10 µs .. 100 ms in ns, with outliers anywhere
latencies = st.one_of(st.integers(min_value=10_000, max_value=100_000_000), values)
percents = st.floats(min_value=0.001, max_value=100.0, allow_nan=False)


def reference_percentile(ordered: list[int], percent: float) -> int:
    """Nearest rank: the smallest value with at least ``percent`` % of values at or below it."""
    rank = max(1, math.ceil(len(ordered) * percent / 100))
    return ordered[min(rank, len(ordered)) - 1]


@given(st.lists(latencies, min_size=1, max_size=400), st.lists(percents, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_percentiles_are_within_the_relative_error(data: list[int], wanted: list[float]) -> None:
    histogram = Histogram()
    histogram.record_many(data)
    ordered = sorted(data)
    for percent in [*wanted, 50.0, 90.0, 99.0, 99.9, 100.0]:
        exact = reference_percentile(ordered, percent)
        approximate = histogram.percentile(percent)
        assert abs(approximate - exact) <= exact * RELATIVE_ERROR, (percent, exact, approximate)
    assert histogram.total_count == len(data)
    assert histogram.minimum == ordered[0]
    assert histogram.maximum == ordered[-1]
    assert histogram.percentile(100.0) == ordered[-1]


@given(st.lists(values, max_size=200), st.lists(values, max_size=200))
@settings(max_examples=100, deadline=None)
def test_merging_equals_recording_everything(first: list[int], second: list[int]) -> None:
    merged = Histogram()
    merged.record_many(first)
    other = Histogram()
    other.record_many(second)
    merged.merge(other)
    together = Histogram()
    together.record_many(first + second)
    assert merged.counts == together.counts
    assert merged.sparse() == together.sparse()


@given(st.lists(values, max_size=100))
@settings(max_examples=50, deadline=None)
def test_sparse_form_and_pickle_round_trip(data: list[int]) -> None:
    histogram = Histogram()
    histogram.record_many(data)
    restored = Histogram.from_sparse(histogram.sparse())
    assert restored.counts == histogram.counts
    assert pickle.loads(pickle.dumps(histogram)).sparse() == histogram.sparse()


def test_buckets_tile_the_value_range_without_gaps() -> None:
    assert bucket_bounds(0) == (0, 0)
    for index in range(BUCKETS - 1):
        assert bucket_bounds(index)[1] + 1 == bucket_bounds(index + 1)[0]
    assert bucket_bounds(BUCKETS - 1)[1] == VALUE_MAX


@given(values)
def test_every_value_lands_in_a_bucket_that_contains_it(value: int) -> None:
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value <= high
    assert high - low <= max(0, low) * 2 * RELATIVE_ERROR


def test_an_empty_histogram_answers_zero() -> None:
    histogram = Histogram()
    assert histogram.percentile(99) == 0
    assert histogram.mean == 0.0


def test_values_beyond_the_range_are_clamped() -> None:
    histogram = Histogram()
    histogram.record(VALUE_MAX * 4)
    assert histogram.percentile(50) == VALUE_MAX
