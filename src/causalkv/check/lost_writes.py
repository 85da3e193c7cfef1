"""Lost acknowledged writes, judged against the final reads.

For every put ``w`` of key ``k`` that completed ok, and every distinct final
observation of ``k`` (a final get, a final list item, or a key a final list
covers but omits; absences inferred between listings of a shard are left to
the convergence check):

* a final value written by ``u`` with ``u`` strictly before ``w`` in causal
  order means ``w`` was overwritten by something older: lost;
* a final "not found" must be explained by a delete of ``k`` (ok, info or
  pending) that is not causally before ``w``; otherwise ``w`` is lost.

A final value concurrent with ``w`` (or after it) legitimately supersedes it.

If ``k`` has no final observation at all, but the history has final lists,
``w`` is lost when no read ever returned it and no delete of ``k`` outside its
causal past explains its absence from every listing. This rule assumes the
final lists together enumerate every shard.
"""

from __future__ import annotations

from causalkv.check.clocks import CausalOrder
from causalkv.check.convergence import MISSING_FROM_LISTING, FinalObservation
from causalkv.check.graph import CausalGraph
from causalkv.check.indexes import WriteIndex
from causalkv.check.observations import Observation
from causalkv.check.operations import History, Operation
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind


class LostWriteJudge:
    """Applies the rules of the module docstring to every acknowledged put."""

    __slots__ = ("_graph", "_history", "_order", "_writes")

    def __init__(
        self, history: History, graph: CausalGraph, order: CausalOrder, writes: WriteIndex
    ) -> None:
        self._history = history
        self._graph = graph
        self._order = order
        self._writes = writes

    def judge(
        self, observations: list[Observation], finals: dict[str, list[FinalObservation]]
    ) -> list[Verdict]:
        explicit: dict[str, dict[str | None, list[FinalObservation]]] = {}
        for key, observed in finals.items():
            for observation in observed:
                if observation.source != MISSING_FROM_LISTING:
                    groups = explicit.setdefault(key, {})
                    groups.setdefault(observation.value, []).append(observation)
        has_final_list = any(
            operation.final and operation.status == "ok" and operation.function == "list"
            for operation in self._history.operations
        )
        read_writes = {observation.writer for observation in observations}
        verdicts: list[Verdict] = []
        for put in self._history.operations:
            if put.function != "put" or put.status != "ok":
                continue
            assert put.key is not None
            final_groups = explicit.get(put.key)
            if final_groups:
                verdicts.extend(self._judge_against_finals(put, final_groups))
            elif (
                has_final_list and put.index not in read_writes and not self._absence_explained(put)
            ):
                verdicts.append(_never_observed(put))
        return verdicts

    def _judge_against_finals(
        self, put: Operation, groups: dict[str | None, list[FinalObservation]]
    ) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for value, group in groups.items():
            if value is None:
                if not self._absence_explained(put):
                    verdicts.append(self._lost(put, group, -1))
                continue
            writer = group[0].writer
            if writer >= 0 and self._order.strictly_precedes(writer, put.index):
                verdicts.append(self._lost(put, group, writer))
        return verdicts

    def _absence_explained(self, put: Operation) -> bool:
        """Whether some delete of the put's key is not causally before it."""
        assert put.key is not None
        writes = self._writes.of(put.key)
        if (
            writes.delete_positions
            and writes.delete_positions[-1] > self._graph.position[put.index]
        ):
            return True  # a delete placed after the put in topological order
        precedes = self._order.precedes
        return any(not precedes(delete, put.index) for delete in writes.deletes)

    def _lost(self, put: Operation, group: list[FinalObservation], writer: int) -> Verdict:
        operations = self._history.operations
        nodes = ", ".join(sorted({operations[item.operation].node for item in group}))
        references = [OperationReference.to(put, "acknowledged write")]
        if writer >= 0:
            older = operations[writer]
            references.append(OperationReference.to(older, "final version"))
            message = (
                f"acknowledged put {put.key} = {put.written!r} by {put.process} "
                f"(line {put.invoke_line}) is lost: final reads on {nodes} return "
                f"{older.written!r}, written causally before it (line {older.invoke_line})"
            )
        else:
            message = (
                f"acknowledged put {put.key} = {put.written!r} by {put.process} "
                f"(line {put.invoke_line}) is lost: final reads on {nodes} find no "
                f"{put.key}, and no delete outside its causal past explains that"
            )
        references.extend(
            OperationReference.to(operations[item.operation], "final read", item.key, item.value)
            for item in group
        )
        return Verdict(
            kind=VerdictKind.LOST_WRITE, key=put.key, message=message, operations=tuple(references)
        )


def _never_observed(put: Operation) -> Verdict:
    return Verdict(
        kind=VerdictKind.LOST_WRITE,
        key=put.key,
        message=(
            f"acknowledged put {put.key} = {put.written!r} by {put.process} "
            f"(line {put.invoke_line}) was never read, and {put.key} is absent from "
            f"every final listing with no delete outside its causal past to explain it"
        ),
        operations=(OperationReference.to(put, "acknowledged write"),),
    )
