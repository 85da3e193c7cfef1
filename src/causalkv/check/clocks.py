"""Vector clocks over processes: constant-time causal-order queries.

The causal past of an operation restricted to one process chain is a prefix
of that chain (chains are totally ordered by session order and everything
entering the past of a chain operation enters the past of its successors). So
the past of an operation ``o`` is summarised by a vector ``clock[o]`` with one
entry per process: the length of that process's chain prefix in the past of
``o`` (``o`` itself included when it is on a chain). Clocks are computed in
topological order as the element-wise maximum of the clocks of the session
predecessor and of the puts read from.

Operations off the chains (info or pending writes) are in the past of other
operations only through the ok reads that read them, so ``w`` precedes ``b``
iff ``w == b`` or some chain reader of ``w`` precedes ``b``. Only the first
reader in each process matters, which `CausalOrder` keeps per such write.

Cost: O(P) time and memory per operation and per reads-from edge, P being the
number of processes; every query afterwards is O(1) (O(readers) for a read
off-chain write).
"""

from __future__ import annotations

from causalkv.check.graph import CausalGraph


class CausalOrder:
    """Answers "is ``a`` in the causal past of ``b`` (or ``b`` itself)?"."""

    __slots__ = ("chain_column", "chain_index", "clocks", "first_readers")

    def __init__(self, graph: CausalGraph) -> None:
        count = len(graph.process_column)
        self.chain_index = graph.chain_index
        self.chain_column = [
            column if index > 0 else -1
            for column, index in zip(graph.process_column, graph.chain_index, strict=True)
        ]
        self.clocks: list[list[int]] = _compute_clocks(graph)
        self.first_readers: dict[int, dict[int, int]] = {}
        for reader in range(count):
            column = self.chain_column[reader]
            if column < 0:
                continue  # final reads pass nothing on
            for writer in graph.sources[reader]:
                if self.chain_column[writer] >= 0:
                    continue
                readers = self.first_readers.setdefault(writer, {})
                index = graph.chain_index[reader]
                if readers.get(column, index + 1) > index:
                    readers[column] = index

    def precedes(self, earlier: int, later: int) -> bool:
        """Whether ``earlier`` is ``later`` or in its causal past."""
        if earlier == later:
            return True
        column = self.chain_column[earlier]
        if column >= 0:
            return self.clocks[later][column] >= self.chain_index[earlier]
        readers = self.first_readers.get(earlier)
        if readers is None:
            return False
        clock = self.clocks[later]
        return any(clock[reader_column] >= index for reader_column, index in readers.items())

    def strictly_precedes(self, earlier: int, later: int) -> bool:
        """Whether ``earlier`` is in the causal past of ``later``, not ``later`` itself."""
        return earlier != later and self.precedes(earlier, later)


def _compute_clocks(graph: CausalGraph) -> list[list[int]]:
    count = len(graph.process_column)
    zero = [0] * len(graph.process_names)
    clocks: list[list[int]] = [zero] * count
    predecessors = graph.session_predecessor
    sources = graph.sources
    chain_index = graph.chain_index
    process_column = graph.process_column
    for operation in graph.order:
        predecessor = predecessors[operation]
        clock = clocks[predecessor] if predecessor >= 0 else zero
        writers = sources[operation]
        fresh = True
        if len(writers) == 1:
            other = clocks[writers[0]]
            clock = [
                mine if mine > theirs else theirs for mine, theirs in zip(clock, other, strict=True)
            ]
        elif writers:
            clock = list(map(max, clock, *[clocks[writer] for writer in writers]))
        else:
            fresh = False  # shares the predecessor's clock: copy before changing it
        index = chain_index[operation]
        if index:
            if not fresh:
                clock = clock.copy()
            clock[process_column[operation]] = index
        clocks[operation] = clock
    return clocks
