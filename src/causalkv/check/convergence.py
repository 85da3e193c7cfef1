"""Convergence: after healing, every node must return the same state.

Final observations are the observations of ok reads marked ``final``: a final
get's value, each item of a final list, and each covered key a final list
omits. In addition, final lists naming the same ``shard`` must be identical,
so a key returned by one of them and missing from another counts, for that
other listing, as a "not found" observation (``"missing from listing"``).

A key is divergent when its final observations disagree (two values, or a
value and "not found"); each divergent key gets one verdict listing which
nodes returned what.
"""

from __future__ import annotations

from typing import NamedTuple

from causalkv.check.observations import Observation, ObservationSource
from causalkv.check.operations import History
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind

MISSING_FROM_LISTING = "missing from listing"


class FinalObservation(NamedTuple):
    """What one final read returned for one key."""

    operation: int
    key: str
    value: str | None
    writer: int
    """The put that wrote ``value``, -1 if null or unknown."""
    source: ObservationSource | str


def final_observations(
    history: History, observations: list[Observation]
) -> dict[str, list[FinalObservation]]:
    """Final observations grouped by key, shard-listing absences included."""
    operations = history.operations
    by_key: dict[str, list[FinalObservation]] = {}
    for observation in observations:
        if operations[observation.operation].final:
            by_key.setdefault(observation.key, []).append(FinalObservation(*observation))
    listings_by_shard: dict[str, list[int]] = {}
    for operation in operations:
        is_final_list = (
            operation.final and operation.status == "ok" and operation.function == "list"
        )
        if is_final_list and operation.shard is not None:
            listings_by_shard.setdefault(operation.shard, []).append(operation.index)
    for listings in listings_by_shard.values():
        listed: set[str] = set()
        for listing in listings:
            result = operations[listing].result
            assert isinstance(result, dict)
            listed.update(result)
        for listing in listings:
            operation = operations[listing]
            assert isinstance(operation.result, dict)
            vouched = set(operation.result).union(operation.covers)
            for key in sorted(listed - vouched):
                by_key.setdefault(key, []).append(
                    FinalObservation(listing, key, None, -1, MISSING_FROM_LISTING)
                )
    return by_key


def judge_convergence(history: History, finals: dict[str, list[FinalObservation]]) -> list[Verdict]:
    """One verdict per key whose final observations disagree."""
    verdicts: list[Verdict] = []
    operations = history.operations
    for key in sorted(finals):
        observed = finals[key]
        values: dict[str | None, list[FinalObservation]] = {}
        for observation in observed:
            values.setdefault(observation.value, []).append(observation)
        if len(values) < 2:
            continue
        parts: list[str] = []
        references: list[OperationReference] = []
        for value, group in values.items():
            nodes = sorted({operations[item.operation].node for item in group})
            shown = "not found" if value is None else repr(value)
            parts.append(f"{shown} on {', '.join(nodes)}")
            references.extend(
                OperationReference.to(operations[item.operation], "final read", key, value)
                for item in group
            )
        verdicts.append(
            Verdict(
                kind=VerdictKind.CONVERGENCE,
                key=key,
                message=f"final reads of {key} disagree: {'; '.join(parts)}",
                operations=tuple(references),
            )
        )
    return verdicts
