"""Lookup tables built once per check: writes per key, reads per session.

`KeyWrites` lists the writes of one key three ways: per process chain (in
session order, to find the latest write of each process in a causal past by
bisection), in topological order (to scan the few writes between a write and a
read that returned it), and the deletes (to explain "not found" reads).

A write is *visible* if it can be in the causal past of some operation: every
chain write, and off-chain puts that some chain read returned. Off-chain
deletes and unread off-chain puts are in nobody's past, but deletes of every
status except fail may still explain a "not found".
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from causalkv.check.clocks import CausalOrder
from causalkv.check.graph import CausalGraph
from causalkv.check.observations import Observation
from causalkv.check.operations import History


@dataclass(slots=True)
class KeyWrites:
    """The writes of one key."""

    chains: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    """Process column to (chain indices, operations) of its chain writes, ascending."""
    visible_off_chain: list[int] = field(default_factory=list)
    """Off-chain puts that some chain read returned."""
    positions: list[int] = field(default_factory=list)
    """Topological positions of the visible writes, ascending."""
    writes: list[int] = field(default_factory=list)
    """The visible writes, in topological order."""
    put_positions: list[int] = field(default_factory=list)
    """Topological positions of the visible puts, ascending."""
    deletes: list[int] = field(default_factory=list)
    """Every delete that took effect or may have (ok, info, pending), in topological order."""
    delete_positions: list[int] = field(default_factory=list)
    """Topological positions of ``deletes``, ascending."""


class WriteIndex:
    """Writes grouped by key (see the module docstring)."""

    __slots__ = ("_empty", "_order", "keys")

    def __init__(self, history: History, graph: CausalGraph, order: CausalOrder) -> None:
        self._order = order
        self._empty = KeyWrites()
        self.keys: dict[str, KeyWrites] = {}
        operations = history.operations
        chain_column = order.chain_column
        chain_index = graph.chain_index
        read_off_chain = order.first_readers
        for position, index in enumerate(graph.order):
            operation = operations[index]
            function = operation.function
            if function == "get" or function == "list" or operation.status == "fail":
                continue
            key = operation.key
            assert key is not None
            writes = self.keys.get(key)
            if writes is None:
                writes = self.keys[key] = KeyWrites()
            is_put = function == "put"
            if not is_put:
                writes.delete_positions.append(position)
                writes.deletes.append(index)
            column = chain_column[index]
            if column >= 0:
                chain = writes.chains.get(column)
                if chain is None:
                    chain = writes.chains[column] = ([], [])
                chain[0].append(chain_index[index])
                chain[1].append(index)
            elif is_put and index in read_off_chain:
                writes.visible_off_chain.append(index)
            else:
                continue
            writes.positions.append(position)
            writes.writes.append(index)
            if is_put:
                writes.put_positions.append(position)

    def of(self, key: str) -> KeyWrites:
        """The writes of ``key`` (empty if it was never written)."""
        return self.keys.get(key, self._empty)

    def latest_in_past(self, key: str, operation: int) -> list[int]:
        """The maximal-per-process writes of ``key`` in ``operation``'s causal past.

        For each process chain, its latest write of ``key`` in the past; plus
        every visible off-chain put of ``key`` in the past. Every write of
        ``key`` in the past precedes (or is) one of these.
        """
        writes = self.of(key)
        clock = self._order.clocks[operation]
        latest: list[int] = []
        for column, (indices, operations) in writes.chains.items():
            count = bisect_right(indices, clock[column])
            if count:
                latest.append(operations[count - 1])
        precedes = self._order.precedes
        latest.extend(
            write
            for write in writes.visible_off_chain
            if write != operation and precedes(write, operation)
        )
        return latest


class SessionReads:
    """Observations of chain reads per (process column, key), in session order."""

    __slots__ = ("_chain_index", "_reads")

    def __init__(self, observations: list[Observation], order: CausalOrder) -> None:
        self._chain_index = order.chain_index
        self._reads: dict[tuple[int, str], list[Observation]] = {}
        for observation in observations:
            column = order.chain_column[observation.operation]
            if column >= 0:
                self._reads.setdefault((column, observation.key), []).append(observation)

    def before(self, column: int, key: str, chain_limit: int) -> list[Observation]:
        """Reads of ``key`` by chain ``column`` at chain index <= ``chain_limit``, latest first."""
        reads = self._reads.get((column, key), [])
        chain_index = self._chain_index
        return [
            observation
            for observation in reversed(reads)
            if chain_index[observation.operation] <= chain_limit
        ]
