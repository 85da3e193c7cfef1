"""Stale reads: which observations missed a write in their causal past.

An observation of key ``k`` by read ``r`` is *stale* when its causal past holds
a write of ``k`` that supersedes what it returned:

* returned put ``w``'s value: a write ``x`` of ``k`` with ``w`` strictly
  before ``x`` and ``x`` in the past of ``r``;
* returned "not found": a put ``x`` of ``k`` in the past of ``r`` that no
  delete explains, where a delete ``d`` of ``k`` explains ``x`` if ``d`` is
  not causally before ``x`` and ``r`` is not causally before ``d``.

The *witnesses* of a stale observation are the writes among
`WriteIndex.latest_in_past` that supersede it. Because "supersedes" is upward
closed along the causal order (a write after a superseding write supersedes
too, a delete explaining ``x`` explains everything before ``x``), an
observation is stale iff it has a witness.

`Staleness.is_stale` answers quickly first: a write superseding ``w`` lies
strictly between ``w`` and ``r`` in the topological order, and that window
holds few writes unless reads are very stale (then the per-process scan is
used). For "not found" it first looks for a put before ``r`` at all, then for a
delete placed between the last such put and ``r``, which explains them all.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from causalkv.check.clocks import CausalOrder
from causalkv.check.graph import CausalGraph
from causalkv.check.indexes import KeyWrites, WriteIndex
from causalkv.check.observations import Observation
from causalkv.check.operations import History


class Staleness:
    """Decides staleness and finds witnesses and explaining deletes."""

    __slots__ = ("_is_put", "_order", "_position", "_writes")

    def __init__(
        self, history: History, graph: CausalGraph, order: CausalOrder, writes: WriteIndex
    ) -> None:
        self._order = order
        self._position = graph.position
        self._writes = writes
        self._is_put = [operation.function == "put" for operation in history.operations]

    def is_stale(self, observation: Observation) -> bool:
        """Whether ``observation`` has a witness (see the module docstring)."""
        writes = self._writes.of(observation.key)
        if observation.value is None:
            return self._null_is_stale(observation, writes)
        writer = observation.writer
        reader = observation.operation
        low = bisect_right(writes.positions, self._position[writer])
        high = bisect_left(writes.positions, self._position[reader])
        if high - low > len(writes.chains) + len(writes.visible_off_chain):
            return bool(self.witnesses(observation))
        precedes = self._order.precedes
        return any(
            precedes(writer, write) and precedes(write, reader) for write in writes.writes[low:high]
        )

    def _null_is_stale(self, observation: Observation, writes: KeyWrites) -> bool:
        reader_position = self._position[observation.operation]
        puts_before = bisect_left(writes.put_positions, reader_position)
        if puts_before == 0:
            return False  # no put can be in the past: the initial state is visible
        last_put_position = writes.put_positions[puts_before - 1]
        deletes_before = bisect_left(writes.delete_positions, reader_position)
        if deletes_before and writes.delete_positions[deletes_before - 1] > last_put_position:
            return False  # that delete explains every put in the past
        return bool(self.witnesses(observation))

    def witnesses(self, observation: Observation) -> list[int]:
        """The maximal writes in the reader's past that supersede the observation."""
        reader = observation.operation
        latest = self._writes.latest_in_past(observation.key, reader)
        return sorted(write for write in latest if self.supersedes(observation, write))

    def supersedes(self, observation: Observation, write: int) -> bool:
        """Whether ``write`` (assumed in the reader's past) makes ``observation`` stale."""
        if observation.value is not None:
            return write != observation.writer and self._order.precedes(observation.writer, write)
        return self._is_put[write] and self.explaining_delete(observation, write) < 0

    def explaining_delete(self, observation: Observation, put: int) -> int:
        """A delete explaining why ``observation`` (not found) misses ``put``, or -1.

        ``put`` is in the reader's past, so it comes before the reader in
        topological order. A delete placed between them explains at once;
        one placed before the put must not be causally before it, one placed
        after the reader must not be causally after the reader.
        """
        reader = observation.operation
        writes = self._writes.of(observation.key)
        deletes = writes.deletes
        positions = writes.delete_positions
        after_put = bisect_right(positions, self._position[put])
        before_reader = bisect_left(positions, self._position[reader])
        if after_put < before_reader:
            return deletes[before_reader - 1]
        precedes = self._order.precedes
        for delete in deletes[:after_put]:
            if not precedes(delete, put):
                return delete
        for delete in deletes[before_reader:]:
            if not precedes(reader, delete):
                return delete
        return -1
