"""Property tests: reference-model histories, injected anomalies, a brute-force oracle."""

from __future__ import annotations

import random

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from causalkv.check import (
    CheckResult,
    History,
    HistoryLine,
    Operation,
    VerdictKind,
    build_history,
    check_history,
)
from causalkv.check.synthetic import Workload, generate_history
from causalkv.check.verdicts import SESSION_GUARANTEE_KINDS
from tests.check.oracle import ReferenceOutcome, reference_check

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@st.composite
def workloads(draw: st.DrawFn, max_operations: int = 60) -> Workload:
    return Workload(
        processes=draw(st.integers(1, 5)),
        keys=draw(st.integers(1, 4)),
        operations=draw(st.integers(0, max_operations)),
        shards=draw(st.integers(1, 2)),
        nodes=draw(st.integers(1, 3)),
        put_weight=draw(st.sampled_from([1.0, 4.0])),
        delete_weight=draw(st.sampled_from([0.0, 1.0, 3.0])),
        list_weight=draw(st.sampled_from([0.0, 1.0])),
        fail_probability=draw(st.sampled_from([0.0, 0.1])),
        info_probability=draw(st.sampled_from([0.0, 0.1, 0.3])),
        final_reads=draw(st.booleans()),
    )


def generated(workload: Workload, seed: int) -> list[HistoryLine]:
    return generate_history(workload, seed).lines()


def to_history(lines: list[HistoryLine]) -> History:
    return build_history(enumerate(lines, start=1))


def flagged(result: CheckResult, kinds: frozenset[VerdictKind]) -> set[tuple[int, str]]:
    found = set()
    for verdict in result.verdicts:
        if verdict.kind in kinds:
            read = verdict.operations[0]
            assert read.role == "read" and verdict.key is not None
            found.add((read.invoke_line, verdict.key))
    return found


def lost_puts(result: CheckResult) -> set[int]:
    return {
        reference.invoke_line
        for verdict in result.of_kind(VerdictKind.LOST_WRITE)
        for reference in verdict.operations
        if reference.role == "acknowledged write"
    }


def assert_agrees(result: CheckResult, expected: ReferenceOutcome) -> None:
    assert (VerdictKind.CAUSAL_CYCLE in result.kinds) == expected.cyclic
    assert flagged(result, frozenset({VerdictKind.THIN_AIR_READ})) == expected.thin_air
    assert (
        flagged(result, frozenset({VerdictKind.READ_OF_FAILED_WRITE}))
        == expected.failed_write_reads
    )
    divergent = {verdict.key for verdict in result.of_kind(VerdictKind.CONVERGENCE)}
    assert divergent == expected.divergent_keys
    if expected.cyclic:
        return  # the checker breaks cycles to go on; the oracle does not
    assert flagged(result, SESSION_GUARANTEE_KINDS) == expected.stale
    assert lost_puts(result) == expected.lost_puts


def assert_justified(result: CheckResult, history: History, expected: ReferenceOutcome) -> None:
    """Each stale-read verdict lists operations that prove its name."""
    by_line = {operation.invoke_line: operation for operation in history.operations}
    precedes = expected.precedes
    for verdict in result.verdicts:
        if verdict.kind not in SESSION_GUARANTEE_KINDS:
            continue
        roles = {reference.role: by_line[reference.invoke_line] for reference in verdict.operations}
        reader = roles["read"]
        version = roles.get("version read")
        witness = roles.get("overwriting write", roles.get("unexplained put"))
        assert witness is not None and witness.key == verdict.key
        assert witness.index in expected.ancestors[reader.index]
        if version is not None:
            assert version.index != witness.index and precedes(version.index, witness.index)
        if verdict.kind is VerdictKind.READ_YOUR_WRITES:
            assert witness.process == reader.process and witness.status == "ok"
        elif verdict.kind is VerdictKind.MONOTONIC_READS:
            earlier = roles["earlier read"]
            assert earlier.process == reader.process and earlier.index < reader.index
            assert earlier.status == "ok" and not earlier.final
        elif verdict.kind is VerdictKind.MONOTONIC_WRITES:
            before = version if version is not None else roles["earlier delete"]
            assert before.process == witness.process and before.index < witness.index
            assert before.status == "ok"
        elif verdict.kind is VerdictKind.WRITES_FOLLOW_READS:
            assert version is not None
            read = roles["writer's earlier read"]
            assert read.process == witness.process and read.index < witness.index
            assert read.key == verdict.key or read.function == "list"


@PROPERTY_SETTINGS
@given(workload=workloads(max_operations=120), seed=st.integers(0, 2**32))
def test_reference_store_histories_are_accepted(workload: Workload, seed: int) -> None:
    history = to_history(generated(workload, seed))
    result = check_history(history)
    assert result.ok, result.render()


@PROPERTY_SETTINGS
@given(workload=workloads(), seed=st.integers(0, 2**32))
def test_reference_store_histories_satisfy_the_oracle(workload: Workload, seed: int) -> None:
    expected = reference_check(to_history(generated(workload, seed)))
    assert expected == ReferenceOutcome()  # ancestors are not compared


def _completion_lines(lines: list[HistoryLine]) -> dict[tuple[str, int], int]:
    """(process, invoke line) to completion line index, for every operation."""
    pending: dict[str, int] = {}
    completions: dict[tuple[str, int], int] = {}
    for index, line in enumerate(lines):
        if line.type == "invoke":
            pending[line.process] = index
        else:
            completions[(line.process, pending.pop(line.process) + 1)] = index
    return completions


@PROPERTY_SETTINGS
@given(
    workload=workloads(max_operations=80),
    seed=st.integers(0, 2**32),
    choice=st.randoms(use_true_random=False),
)
def test_injected_stale_read_is_rejected(
    workload: Workload, seed: int, choice: random.Random
) -> None:
    """Replace a read's value by a version older than a write in its session's past."""
    lines = generated(workload, seed)
    history = to_history(lines)
    ancestry = _Ancestry(history)
    candidates: list[tuple[Operation, Operation]] = []
    for reader in history.operations:
        if reader.function != "get" or reader.status != "ok" or reader.final:
            continue
        assert reader.key is not None
        for newer in ancestry.session_past(reader):
            if newer.key != reader.key or newer.function not in ("put", "delete"):
                continue
            candidates.extend(
                (reader, older)
                for older in ancestry.strict_past(newer)
                if older.key == reader.key and older.function == "put"
            )
    assume(candidates)
    reader, older = choice.choice(candidates)
    completion = _completion_lines(lines)[(reader.process, reader.invoke_line)]
    lines[completion] = msgspec.structs.replace(lines[completion], value=older.written)
    result = check_history(to_history(lines))
    stale = flagged(result, SESSION_GUARANTEE_KINDS)
    assert (reader.invoke_line, reader.key) in stale, result.render()


@PROPERTY_SETTINGS
@given(workload=workloads(max_operations=80), seed=st.integers(0, 2**32))
def test_reading_an_own_overwritten_value_is_read_your_writes(
    workload: Workload, seed: int
) -> None:
    lines = generated(workload, seed)
    history = to_history(lines)
    injected = None
    for reader in history.operations:
        if reader.function != "get" or reader.status != "ok" or reader.final:
            continue
        own_puts = [
            operation
            for operation in history.operations[: reader.index]
            if operation.process == reader.process
            and operation.key == reader.key
            and operation.function == "put"
            and operation.status == "ok"
        ]
        if len(own_puts) >= 2:
            injected = (reader, own_puts[0])
            break
    assume(injected is not None)
    assert injected is not None
    reader, older = injected
    completion = _completion_lines(lines)[(reader.process, reader.invoke_line)]
    lines[completion] = msgspec.structs.replace(lines[completion], value=older.written)
    result = check_history(to_history(lines))
    kinds = {
        verdict.kind
        for verdict in result.verdicts
        if verdict.operations[0].invoke_line == reader.invoke_line
    }
    assert VerdictKind.READ_YOUR_WRITES in kinds, result.render()


class _Ancestry:
    """Causal past by brute force, through the oracle's definitions."""

    def __init__(self, history: History) -> None:
        self.history = history
        operations = history.operations
        puts = {(op.key, op.written): op for op in operations if op.function == "put"}
        self.parents: dict[int, set[int]] = {op.index: set() for op in operations}
        for operation in operations:
            for earlier in operations[: operation.index]:
                if (
                    earlier.process == operation.process
                    and earlier.status == "ok"
                    and not earlier.final
                ):
                    self.parents[operation.index].add(earlier.index)
            if operation.status == "ok" and operation.function in ("get", "list"):
                values = (
                    operation.result.items()
                    if isinstance(operation.result, dict)
                    else [(operation.key, operation.result)]
                )
                for key, value in values:
                    put = puts.get((key, value))
                    if put is not None and put.status != "fail":
                        self.parents[operation.index].add(put.index)

    def strict_past(self, operation: Operation) -> list[Operation]:
        seen: set[int] = set()
        stack = list(self.parents[operation.index])
        while stack:
            index = stack.pop()
            if index not in seen:
                seen.add(index)
                stack.extend(self.parents[index])
        return [self.history.operations[index] for index in sorted(seen)]

    def session_past(self, reader: Operation) -> list[Operation]:
        """The past of the reader without its own reads-from edges."""
        past: dict[int, Operation] = {}
        for earlier in self.history.operations[: reader.index]:
            if earlier.process == reader.process and earlier.status == "ok" and not earlier.final:
                past[earlier.index] = earlier
                past.update((op.index, op) for op in self.strict_past(earlier))
        return list(past.values())


def _mutate(lines: list[HistoryLine], rng: random.Random, mutations: int) -> list[HistoryLine]:
    values_by_key: dict[str, list[str]] = {}
    for line in lines:
        if line.f == "put" and line.type == "invoke" and isinstance(line.value, str):
            assert line.key is not None
            values_by_key.setdefault(line.key, []).append(line.value)
    keys = sorted(values_by_key) or ["k0"]

    def some_value(key: str) -> str | None:
        options: list[str | None] = [None, "bogus", *values_by_key.get(key, [])]
        return rng.choice(options)

    mutated = list(lines)
    reads = [
        index for index, line in enumerate(lines) if line.type == "ok" and line.f in ("get", "list")
    ]
    writes = [
        index
        for index, line in enumerate(lines)
        if line.type == "ok" and line.f in ("put", "delete")
    ]
    for _ in range(mutations):
        if writes and rng.random() < 0.25:
            index = rng.choice(writes)
            mutated[index] = msgspec.structs.replace(
                mutated[index], type=rng.choice(["info", "fail"])
            )
            continue
        if not reads:
            break
        index = rng.choice(reads)
        line = mutated[index]
        if line.f == "get":
            assert line.key is not None
            mutated[index] = msgspec.structs.replace(line, value=some_value(line.key))
        else:
            assert isinstance(line.value, dict)
            listing = dict(line.value)
            key = rng.choice(keys)
            value = some_value(key)
            if value is None:
                listing.pop(key, None)
            else:
                listing[key] = value
            mutated[index] = msgspec.structs.replace(line, value=listing)
    return mutated


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads(max_operations=40),
    seed=st.integers(0, 2**32),
    mutations=st.integers(1, 4),
    choice=st.randoms(use_true_random=False),
)
def test_checker_agrees_with_brute_force_oracle(
    workload: Workload, seed: int, mutations: int, choice: random.Random
) -> None:
    lines = _mutate(generated(workload, seed), choice, mutations)
    history = to_history(lines)
    result = check_history(history)
    expected = reference_check(history)
    assert_agrees(result, expected)
    if not expected.cyclic:
        assert_justified(result, history, expected)
