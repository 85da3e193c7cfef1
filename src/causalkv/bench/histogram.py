"""A small HDR-style latency histogram with bounded relative error.

Theory of operation: values are non-negative integers (nanoseconds here).
Values below ``2**PRECISION_BITS`` get a bucket each (exact). Above that,
every power-of-two range ``[2**e, 2**(e+1))`` is split into
``2**(PRECISION_BITS - 1)`` equal buckets, so a bucket is never wider than
``2**-(PRECISION_BITS - 1)`` of its lower bound. A percentile answers the
midpoint of the bucket holding the nearest-rank sample, so the relative error
of any percentile is at most ``RELATIVE_ERROR`` (about 0.4 % with 8 bits).

Why our own and not ``hdrhistogram`` from PyPI: recording must be a handful of
Python operations on the generator's hot path; histograms must cross process
boundaries (pickle) and be merged; and a 150-line module with a property test
is easier to trust than a dependency. Counts live in a flat list indexed by
bucket; ``sparse()`` gives the compact form for JSON and pickling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PRECISION_BITS = 8
SUB_BUCKETS = 1 << PRECISION_BITS
HALF_SUB_BUCKETS = SUB_BUCKETS >> 1
VALUE_BITS_MAX = 44  # 2**44 ns is about 4.9 hours; larger values are clamped
VALUE_MAX = (1 << VALUE_BITS_MAX) - 1
BUCKETS = (VALUE_BITS_MAX - PRECISION_BITS) * HALF_SUB_BUCKETS + SUB_BUCKETS
RELATIVE_ERROR = 1.0 / SUB_BUCKETS


def bucket_index(value: int) -> int:
    """The bucket of a value (clamped to ``[0, VALUE_MAX]``)."""
    if value < SUB_BUCKETS:
        return value if value > 0 else 0
    if value > VALUE_MAX:
        value = VALUE_MAX
    shift = value.bit_length() - PRECISION_BITS
    return (value >> shift) + shift * HALF_SUB_BUCKETS


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value that land in bucket ``index``."""
    if index < SUB_BUCKETS:
        return index, index
    shift = (index - HALF_SUB_BUCKETS) // HALF_SUB_BUCKETS
    quotient = index - shift * HALF_SUB_BUCKETS
    low = quotient << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of integer values in log-linear buckets; mergeable and picklable."""

    __slots__ = ("counts", "maximum", "minimum", "total", "total_count")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * BUCKETS
        self.total_count = 0
        self.total = 0
        self.minimum = VALUE_MAX
        self.maximum = 0

    def record(self, value: int) -> None:
        """Add one value (hot path: keep it short)."""
        if value < SUB_BUCKETS:
            index = value if value > 0 else 0
        else:
            if value > VALUE_MAX:
                value = VALUE_MAX
            shift = value.bit_length() - PRECISION_BITS
            index = (value >> shift) + shift * HALF_SUB_BUCKETS
        self.counts[index] += 1
        self.total_count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts into this one."""
        if other.total_count == 0:
            return
        counts = self.counts
        for index, count in enumerate(other.counts):
            if count:
                counts[index] += count
        self._merge_summary(other.total_count, other.total, other.minimum, other.maximum)

    def _merge_summary(self, count: int, total: int, minimum: int, maximum: int) -> None:
        self.total_count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)

    def reset(self) -> None:
        self.counts = [0] * BUCKETS
        self.total_count = 0
        self.total = 0
        self.minimum = VALUE_MAX
        self.maximum = 0

    @property
    def mean(self) -> float:
        return self.total / self.total_count if self.total_count else 0.0

    def percentile(self, percent: float) -> int:
        """The nearest-rank ``percent`` percentile (0 < percent <= 100), within
        ``RELATIVE_ERROR``; 0 for an empty histogram."""
        if self.total_count == 0:
            return 0
        rank = max(1, -(-self.total_count * percent // 100))  # ceil without floats drifting
        rank = min(int(rank), self.total_count)
        if rank == self.total_count:
            return self.maximum
        if rank == 1:
            return self.minimum
        seen = 0
        for index, count in enumerate(self.counts):
            if count:
                seen += count
                if seen >= rank:
                    low, high = bucket_bounds(index)
                    value = (low + high) // 2
                    return min(max(value, self.minimum), self.maximum)
        return self.maximum  # pragma: no cover (counts and total_count agree)

    def percentiles(self, percents: Iterable[float]) -> dict[float, int]:
        return {percent: self.percentile(percent) for percent in percents}

    def sparse(self) -> dict[str, object]:
        """A compact, JSON-friendly form (``from_sparse`` reads it back)."""
        return {
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
            "count": self.total_count,
            "total": self.total,
            "min": self.minimum,
            "max": self.maximum,
        }

    @classmethod
    def from_sparse(cls, data: Mapping[str, object]) -> Histogram:
        histogram = cls()
        buckets = data["buckets"]
        assert isinstance(buckets, Mapping)
        for index, count in buckets.items():
            histogram.counts[int(index)] = int(count)
        histogram.total_count = _as_int(data["count"])
        histogram.total = _as_int(data["total"])
        histogram.minimum = _as_int(data["min"])
        histogram.maximum = _as_int(data["max"])
        return histogram

    def __getstate__(self) -> dict[str, object]:
        return self.sparse()

    def __setstate__(self, state: dict[str, object]) -> None:
        restored = Histogram.from_sparse(state)
        self.counts = restored.counts
        self.total_count = restored.total_count
        self.total = restored.total
        self.minimum = restored.minimum
        self.maximum = restored.maximum


def _as_int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value
