"""Causal visibility verdicts: stale reads, named by `causalkv.check.classification`.

Every judged observation (null, or with a valid writer, and whose reads-from
edge was not dropped to break a cycle) is tested with `Staleness.is_stale`;
stale ones are classified and turned into one `Verdict` each, naming the read,
the version it returned, the superseding write and the evidence for the name.
"""

from __future__ import annotations

from itertools import pairwise

from causalkv.check.classification import Classification, Classifier
from causalkv.check.graph import CausalGraph
from causalkv.check.observations import Observation
from causalkv.check.operations import History, Operation
from causalkv.check.staleness import Staleness
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind


def judge_visibility(
    history: History,
    graph: CausalGraph,
    observations: list[Observation],
    staleness: Staleness,
    classifier: Classifier,
) -> list[Verdict]:
    """One verdict per stale observation."""
    verdicts: list[Verdict] = []
    broken = graph.broken_edges
    for observation in observations:
        if not observation.is_judged:
            continue
        if broken and (observation.writer, observation.operation) in broken:
            continue  # already reported as part of a causal cycle
        if not staleness.is_stale(observation):
            continue
        classification = classifier.classify(observation, staleness.witnesses(observation))
        verdicts.append(_verdict(history, observation, classification))
    return verdicts


def describe_write(operation: Operation) -> str:
    """E.g. ``put k = 'v3' by p2 (line 40)`` or ``delete k by p1 (line 7)``."""
    what = (
        f"put {operation.key} = {operation.written!r}"
        if operation.function == "put"
        else f"delete {operation.key}"
    )
    return f"{what} by {operation.process} (line {operation.invoke_line})"


def describe_observation(observation: Observation) -> str:
    if observation.value is None:
        return f"{observation.key}: not found"
    return f"{observation.key} = {observation.value!r}"


def _verdict(history: History, observation: Observation, classification: Classification) -> Verdict:
    operations = history.operations
    reader = operations[observation.operation]
    witness = operations[classification.witness]
    seen = describe_observation(observation)
    newer = describe_write(witness)
    references = [OperationReference.to(reader, "read", observation.key, observation.value)]
    if observation.writer >= 0:
        references.append(OperationReference.to(operations[observation.writer], "version read"))
    witness_role = "overwriting write" if observation.value is not None else "unexplained put"
    references.append(OperationReference.to(witness, witness_role))
    kind = classification.kind
    evidence = classification.evidence
    if kind is VerdictKind.READ_YOUR_WRITES:
        message = f"{reader.process} read {seen} although it had itself written {newer} earlier"
    elif kind is VerdictKind.MONOTONIC_READS:
        assert evidence is not None
        earlier = operations[evidence.operation]
        message = (
            f"{reader.process} read {seen} after its earlier read (line {earlier.invoke_line}) "
            f"had returned {describe_observation(evidence)}, written by {newer}"
        )
        references.append(
            OperationReference.to(earlier, "earlier read", evidence.key, evidence.value)
        )
    elif kind is VerdictKind.MONOTONIC_WRITES and observation.value is None:
        delete = operations[classification.earlier_delete]
        message = (
            f"{reader.process} read {seen}, but {newer} follows {describe_write(delete)} "
            f"in its session and is in the reader's causal past"
        )
        references.append(OperationReference.to(delete, "earlier delete"))
    elif kind is VerdictKind.MONOTONIC_WRITES:
        message = (
            f"{reader.process} read {seen}, but its writer {witness.process} later wrote "
            f"{newer}, which is in the reader's causal past"
        )
    elif kind is VerdictKind.WRITES_FOLLOW_READS:
        assert evidence is not None
        read = operations[evidence.operation]
        message = (
            f"{reader.process} read {seen}, but {witness.process} had read "
            f"{describe_observation(evidence)} (line {read.invoke_line}) before writing "
            f"{newer}, which is in the reader's causal past"
        )
        references.append(
            OperationReference.to(read, "writer's earlier read", evidence.key, evidence.value)
        )
    else:
        reason = (
            "it overwrote that version"
            if observation.value is not None
            else f"no delete of {observation.key} explains the absence"
        )
        message = (
            f"{reader.process} read {seen}, but {newer} is in its causal past "
            f"(through other keys or processes) and {reason}"
        )
        references.extend(_path_references(history, classification.path))
    return Verdict(kind=kind, key=observation.key, message=message, operations=tuple(references))


def _path_references(history: History, path: tuple[int, ...]) -> list[OperationReference]:
    operations = history.operations
    references: list[OperationReference] = []
    for previous, current in pairwise(path[:-1]):
        operation = operations[current]
        source = operations[previous]
        if operation.is_read and source.function == "put":
            references.append(
                OperationReference.to(operation, "causal path", source.key, source.written)
            )
        else:
            references.append(OperationReference.to(operation, "causal path"))
    return references
