"""Naming a stale read after the session guarantee it breaks.

A stale observation by read ``r`` of process ``p`` returned version ``w`` of
key ``k`` (or "not found") while its causal past holds witnesses: writes ``x``
of ``k`` that supersede it (see `causalkv.check.staleness`). The rules are
tried in this order and the first that applies names the violation; each
names the operations that prove it.

1. read-your-writes: a witness was written by ``p`` itself, completed ok, and
   precedes ``r`` in session order (``p`` had its own newer write).
2. monotonic-reads: an earlier ok read of ``p`` (before ``r`` in session order)
   returned a version of ``k`` that itself supersedes what ``r`` returned
   (``p`` had already seen something newer).
3. monotonic-writes: a witness was written by the process that wrote ``w``,
   after ``w`` in that process's session, ``w`` having completed ok; for a
   "not found", the witness's process had written an ok delete of ``k``
   earlier in its session (the null may be that tombstone, observed after the
   put that followed it).
4. writes-follow-reads (returned a value only): a witness's process had read
   ``w``, or a version of ``k`` written causally after ``w``, earlier in its
   session than the witness (it overwrote what it had read).
5. causal-visibility: none of the above; the witness reached ``r``'s past only
   transitively, through other keys or processes. The report includes a
   causal path from the witness to the read.

Rules 1 and 2 look at how ``r`` learnt about the newer write, rules 3 and 4 at
how the newer write came to follow ``w``; the first two are preferred because
they involve only the reader's own session.
"""

from __future__ import annotations

from dataclasses import dataclass

from causalkv.check.clocks import CausalOrder
from causalkv.check.graph import CausalGraph
from causalkv.check.indexes import SessionReads, WriteIndex
from causalkv.check.observations import Observation
from causalkv.check.operations import History
from causalkv.check.staleness import Staleness
from causalkv.check.verdicts import VerdictKind


@dataclass(frozen=True, slots=True)
class Classification:
    """The name of a violation and the operations that justify it."""

    kind: VerdictKind
    witness: int
    """The superseding write reported."""
    evidence: Observation | None = None
    """Monotonic reads: the earlier read. Writes-follow-reads: the writer's read."""
    earlier_delete: int = -1
    """Monotonic writes on a not-found read: the delete preceding the witness."""
    path: tuple[int, ...] = ()
    """Causal visibility: operations leading from the witness to the read."""


class Classifier:
    """Applies the rules of the module docstring."""

    __slots__ = (
        "_graph",
        "_history",
        "_observations",
        "_order",
        "_session_reads",
        "_staleness",
        "_writes",
    )

    def __init__(
        self,
        history: History,
        graph: CausalGraph,
        order: CausalOrder,
        writes: WriteIndex,
        observations: list[Observation],
        staleness: Staleness,
    ) -> None:
        self._history = history
        self._graph = graph
        self._order = order
        self._writes = writes
        self._observations = observations
        self._session_reads: SessionReads | None = None
        self._staleness = staleness

    @property
    def session_reads(self) -> SessionReads:
        """Built on first use: most histories have no stale read to classify."""
        if self._session_reads is None:
            self._session_reads = SessionReads(self._observations, self._order)
        return self._session_reads

    def classify(self, observation: Observation, witnesses: list[int]) -> Classification:
        """Name the violation of a stale ``observation`` with these witnesses."""
        assert witnesses, "only stale observations are classified"
        reader = observation.operation
        reader_column = self._graph.process_column[reader]
        for witness in witnesses:
            if self._order.chain_column[witness] == reader_column:
                return Classification(VerdictKind.READ_YOUR_WRITES, witness)
        earlier = self._monotonic_reads_evidence(observation)
        if earlier is not None:
            return Classification(VerdictKind.MONOTONIC_READS, earlier.writer, evidence=earlier)
        if observation.value is None:
            for witness in witnesses:
                delete = self._earlier_delete_in_session(observation.key, witness)
                if delete >= 0:
                    return Classification(
                        VerdictKind.MONOTONIC_WRITES, witness, earlier_delete=delete
                    )
        else:
            writer = observation.writer
            writer_column = self._graph.process_column[writer]
            if self._order.chain_column[writer] >= 0:
                for witness in witnesses:
                    if self._graph.process_column[witness] == writer_column:
                        return Classification(VerdictKind.MONOTONIC_WRITES, witness)
            for witness in witnesses:
                read = self._writer_read_evidence(observation, witness)
                if read is not None:
                    return Classification(VerdictKind.WRITES_FOLLOW_READS, witness, evidence=read)
        witness = witnesses[0]
        return Classification(
            VerdictKind.CAUSAL_VISIBILITY, witness, path=self.causal_path(witness, reader)
        )

    def _session_limit(self, operation: int) -> int:
        """Chain index of the last chain operation before ``operation`` in its session."""
        index = self._graph.chain_index[operation]
        if index:
            return index - 1
        predecessor = self._graph.session_predecessor[operation]
        return self._graph.chain_index[predecessor] if predecessor >= 0 else 0

    def _monotonic_reads_evidence(self, observation: Observation) -> Observation | None:
        reader = observation.operation
        column = self._graph.process_column[reader]
        precedes = self._order.precedes
        for earlier in self.session_reads.before(
            column, observation.key, self._session_limit(reader)
        ):
            writer = earlier.writer
            if (
                writer >= 0
                and precedes(writer, reader)
                and self._staleness.supersedes(observation, writer)
            ):
                return earlier
        return None

    def _earlier_delete_in_session(self, key: str, witness: int) -> int:
        """An ok delete of ``key`` by the witness's process before it, or -1."""
        column = self._graph.process_column[witness]
        chain = self._writes.of(key).chains.get(column)
        if chain is None:
            return -1
        limit = self._session_limit(witness)
        for index, write in zip(*chain, strict=True):
            if index <= limit and self._history.operations[write].function == "delete":
                return write
        return -1

    def _writer_read_evidence(self, observation: Observation, witness: int) -> Observation | None:
        writer = observation.writer
        column = self._graph.process_column[witness]
        precedes = self._order.precedes
        for read in self.session_reads.before(
            column, observation.key, self._session_limit(witness)
        ):
            if read.writer >= 0 and precedes(writer, read.writer):
                return read
        return None

    def causal_path(self, source: int, target: int) -> tuple[int, ...]:
        """Operations on a causal path from ``source`` to ``target``, both included.

        Walks backwards from ``target``, preferring reads-from edges whose
        writer still follows ``source``; runs of session steps are collapsed to
        the operations where the path enters and leaves each session.
        """
        precedes = self._order.precedes
        predecessors = self._graph.session_predecessor
        path = [target]
        current = target
        while current != source:
            jump = next(
                (writer for writer in self._graph.sources[current] if precedes(source, writer)),
                -1,
            )
            if jump >= 0:
                if path[-1] != current:
                    path.append(current)
                path.append(jump)
                current = jump
                continue
            current = predecessors[current]
            assert current >= 0, "no causal path"
            if current == source:
                path.append(current)
        path.reverse()
        return tuple(path)
