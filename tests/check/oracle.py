"""A brute-force reference checker: the definitions, applied literally.

It builds the causal graph edge by edge, computes every operation's full set of
ancestors by fixed-point iteration (fine for the few dozen operations of a
property-test history) and evaluates each rule as written in docs/checker.md,
with no clocks, windows or per-process shortcuts. The real checker must flag
exactly the same observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from causalkv.check import History, Operation


@dataclass
class ReferenceOutcome:
    cyclic: bool = False
    stale: set[tuple[int, str]] = field(default_factory=set)
    """(reader invoke line, key) of stale observations."""
    thin_air: set[tuple[int, str]] = field(default_factory=set)
    failed_write_reads: set[tuple[int, str]] = field(default_factory=set)
    lost_puts: set[int] = field(default_factory=set)
    """Invoke lines of lost acknowledged puts."""
    divergent_keys: set[str] = field(default_factory=set)
    ancestors: list[set[int]] = field(default_factory=list, compare=False)
    """Strict causal past of every operation (by index)."""

    def precedes(self, earlier: int, later: int) -> bool:
        return earlier == later or earlier in self.ancestors[later]


def observations_of(operation: Operation) -> list[tuple[str, str | None]]:
    if operation.status != "ok" or operation.function not in ("get", "list"):
        return []
    if operation.function == "get":
        assert operation.key is not None and not isinstance(operation.result, dict)
        return [(operation.key, operation.result)]
    assert isinstance(operation.result, dict)
    items: list[tuple[str, str | None]] = list(operation.result.items())
    items += [(key, None) for key in operation.covers if key not in operation.result]
    return items


def reference_check(history: History) -> ReferenceOutcome:
    outcome = ReferenceOutcome()
    operations = history.operations
    count = len(operations)
    puts = {
        (operation.key, operation.written): operation
        for operation in operations
        if operation.function == "put"
    }
    on_chain = [operation.status == "ok" and not operation.final for operation in operations]
    predecessors: list[set[int]] = [set() for _ in range(count)]
    observed: list[tuple[Operation, str, str | None, int | None]] = []
    for operation in operations:
        for earlier in operations[: operation.index]:
            if earlier.process == operation.process and on_chain[earlier.index]:
                predecessors[operation.index].add(earlier.index)
        for key, value in observations_of(operation):
            writer: int | None = None
            if value is not None:
                put = puts.get((key, value))
                if put is None:
                    outcome.thin_air.add((operation.invoke_line, key))
                elif put.status == "fail":
                    outcome.failed_write_reads.add((operation.invoke_line, key))
                else:
                    writer = put.index
                    predecessors[operation.index].add(writer)
            observed.append((operation, key, value, writer))
    ancestors: list[set[int]] = [set(sources) for sources in predecessors]
    changed = True
    while changed:
        changed = False
        for index in range(count):
            grown = set(ancestors[index])
            for ancestor in ancestors[index]:
                grown |= ancestors[ancestor]
            if grown != ancestors[index]:
                ancestors[index] = grown
                changed = True
    outcome.cyclic = any(index in ancestors[index] for index in range(count))
    outcome.ancestors = ancestors

    def precedes(earlier: int, later: int) -> bool:
        return earlier == later or earlier in ancestors[later]

    def writes(key: str, function: str) -> list[int]:
        return [
            operation.index
            for operation in operations
            if operation.key == key
            and operation.function == function
            and operation.status != "fail"
        ]

    for reader, key, value, writer in observed:
        r = reader.index
        if value is not None:
            if writer is None:
                continue
            every_write = writes(key, "put") + writes(key, "delete")
            if any(x != writer and precedes(writer, x) and x in ancestors[r] for x in every_write):
                outcome.stale.add((reader.invoke_line, key))
        else:
            for x in writes(key, "put"):
                if x in ancestors[r] and not any(
                    not precedes(d, x) and not precedes(r, d) for d in writes(key, "delete")
                ):
                    outcome.stale.add((reader.invoke_line, key))

    finals = [item for item in observed if item[0].final]
    has_final_list = any(item[0].function == "list" for item in finals)
    read_writers = {item[3] for item in observed}
    for put in operations:
        if put.function != "put" or put.status != "ok":
            continue
        assert put.key is not None
        w = put.index
        explained = any(not precedes(d, w) for d in writes(put.key, "delete"))
        of_key = [item for item in finals if item[1] == put.key]
        for _, _, value, writer in of_key:
            if value is None and not explained:
                outcome.lost_puts.add(put.invoke_line)
            if writer is not None and writer != w and precedes(writer, w):
                outcome.lost_puts.add(put.invoke_line)
        if not of_key and has_final_list and w not in read_writers and not explained:
            outcome.lost_puts.add(put.invoke_line)

    values_by_key: dict[str, set[str | None]] = {}
    for _, key, value, _ in finals:
        values_by_key.setdefault(key, set()).add(value)
    listed_by_shard: dict[str, list[Operation]] = {}
    for operation in operations:
        final_list = operation.final and operation.status == "ok" and operation.function == "list"
        if final_list and operation.shard is not None:
            listed_by_shard.setdefault(operation.shard, []).append(operation)
    for listings in listed_by_shard.values():
        for listing in listings:
            for other in listings:
                assert isinstance(listing.result, dict) and isinstance(other.result, dict)
                for key in other.result:
                    if key not in listing.result:
                        values_by_key.setdefault(key, set()).add(None)
    outcome.divergent_keys = {key for key, values in values_by_key.items() if len(values) > 1}
    return outcome
