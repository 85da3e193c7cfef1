"""Workload mixes and key distributions of the load generator.

Why: a benchmark is only comparable if each workload really issues the
YCSB proportions it is named after, and the causal workload really chains a
read and a write of a different key.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from causalkv.bench.workloads import (
    WORKLOADS,
    Distribution,
    OperationKind,
    OperationStream,
    UniformKeys,
    ZipfianKeys,
    make_key_chooser,
    workload_named,
)

SAMPLES = 40_000


def _mix(name: str, seed: int = 7) -> Counter[OperationKind]:
    rng = random.Random(seed)
    stream = OperationStream(workload_named(name), UniformKeys(1000, rng), rng)
    return Counter(stream.next_operation()[0] for _ in range(SAMPLES))


@pytest.mark.parametrize(("name", "read_fraction"), [("A", 0.5), ("B", 0.95), ("C", 1.0)])
def test_ycsb_mixes_have_their_read_proportion(name: str, read_fraction: float) -> None:
    counts = _mix(name)
    observed = counts[OperationKind.READ] / SAMPLES
    # 40,000 Bernoulli draws: 5 standard deviations is under 0.0125 for p=0.5
    assert abs(observed - read_fraction) < 0.0125
    assert counts[OperationKind.READ] + counts[OperationKind.UPDATE] == SAMPLES


def test_causal_workload_alternates_reads_and_writes_of_different_keys() -> None:
    rng = random.Random(3)
    stream = OperationStream(WORKLOADS["causal"], UniformKeys(5, rng), rng)
    operations = [stream.next_operation() for _ in range(2_000)]
    kinds = [kind for kind, _ in operations]
    assert kinds == [OperationKind.READ, OperationKind.UPDATE] * 1_000
    for (_, read_key), (_, written_key) in zip(operations[::2], operations[1::2], strict=True):
        assert read_key != written_key


def test_workload_names_are_case_insensitive_and_checked() -> None:
    assert workload_named("a").name == "A"
    assert workload_named("CAUSAL").name == "causal"
    with pytest.raises(ValueError, match="unknown workload"):
        workload_named("D")


def test_uniform_keys_cover_the_key_space_evenly() -> None:
    chooser = make_key_chooser(Distribution.UNIFORM, 10, random.Random(1))
    counts = Counter(chooser.next_index() for _ in range(SAMPLES))
    assert set(counts) == set(range(10))
    assert max(counts.values()) / min(counts.values()) < 1.15


def test_zipfian_keys_are_skewed_and_in_range() -> None:
    chooser = ZipfianKeys(1000, random.Random(1))
    ranks = Counter(chooser.next_rank() for _ in range(SAMPLES))
    assert all(0 <= rank < 1000 for rank in ranks)
    # rank 0 has weight 1/zeta(1000, 0.99), about 13 % of draws; rank 1 about half that
    assert 0.10 < ranks[0] / SAMPLES < 0.16
    assert ranks[0] > 1.6 * ranks[1]
    indexes = Counter(chooser.next_index() for _ in range(SAMPLES))
    assert all(0 <= index < 1000 for index in indexes)
    # scrambling moves the hottest item away from index 0
    assert indexes.most_common(1)[0][0] != 0
