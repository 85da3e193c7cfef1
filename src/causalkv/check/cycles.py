"""Causal-cycle verdicts, one per strongly connected component of the graph.

The simplest cycle is a read returning a value its own process writes later;
longer ones cross processes (each reads what the other writes afterwards).
"""

from __future__ import annotations

from causalkv.check.graph import CausalGraph
from causalkv.check.operations import History
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind


def judge_cycles(history: History, graph: CausalGraph) -> list[Verdict]:
    """Describe each cycle found while sorting the graph."""
    operations = history.operations
    verdicts: list[Verdict] = []
    for cycle in graph.cycles:
        steps: list[str] = []
        references: list[OperationReference] = []
        for position, current in enumerate(cycle):
            following = cycle[(position + 1) % len(cycle)]
            operation = operations[current]
            label = graph.edge_label(current, following)
            steps.append(f"{operation.process} {operation.function} (line {operation.invoke_line})")
            steps.append(f"-[{label}]->")
            previous = cycle[position - 1]
            if operation.is_read and graph.edge_label(previous, current) == "reads-from":
                source = operations[previous]
                references.append(
                    OperationReference.to(operation, "cycle", source.key, source.written)
                )
            else:
                references.append(OperationReference.to(operation, "cycle"))
        first = operations[cycle[0]]
        steps.append(f"{first.process} {first.function} (line {first.invoke_line})")
        own_session = len({operations[member].process for member in cycle}) == 1
        summary = (
            "a read returned a value its own process wrote only later"
            if own_session
            else "operations causally precede themselves"
        )
        keys = {operations[member].key for member in cycle if operations[member].key}
        verdicts.append(
            Verdict(
                kind=VerdictKind.CAUSAL_CYCLE,
                key=next(iter(keys)) if len(keys) == 1 else None,
                message=f"{summary}: {' '.join(steps)}",
                operations=tuple(references),
            )
        )
    return verdicts
