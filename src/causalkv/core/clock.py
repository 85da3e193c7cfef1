"""Version vectors over writers.

A clock maps each writer to a sequence number and means "everything that
writer issued up to that number". Clocks are plain ``dict[Writer, int]`` for
speed; functions here never mutate their arguments unless named ``merge_into``.
Absent writers count as 0.

Laws (checked by property tests): merge is commutative, associative and
idempotent; ``dominates(merge(a, b), a)`` always holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from causalkv.core.writer import Writer

Clock = dict[Writer, int]
ClockView = Mapping[Writer, int]


def merge(left: ClockView, right: ClockView) -> Clock:
    """Pointwise maximum of two clocks."""
    if len(left) < len(right):
        left, right = right, left
    result = dict(left)
    for writer, seq in right.items():
        if seq > result.get(writer, 0):
            result[writer] = seq
    return result


def merge_into(target: Clock, other: ClockView) -> bool:
    """Raise ``target`` to at least ``other`` in place; return whether it changed."""
    changed = False
    for writer, seq in other.items():
        if seq > target.get(writer, 0):
            target[writer] = seq
            changed = True
    return changed


def dominates(big: ClockView, small: ClockView) -> bool:
    """True when ``big`` has seen everything ``small`` has."""
    return all(big.get(writer, 0) >= seq for writer, seq in small.items())


def contains_dot(clock: ClockView, writer: Writer, seq: int) -> bool:
    """True when the dot ``(writer, seq)`` is in the history that ``clock`` covers."""
    return clock.get(writer, 0) >= seq


def from_pairs(pairs: Iterable[tuple[Writer, int]]) -> Clock:
    """Build a clock from (writer, seq) pairs, keeping the maximum per writer and dropping zeros."""
    result: Clock = {}
    for writer, seq in pairs:
        if seq > result.get(writer, 0):
            result[writer] = seq
    return result


def sorted_pairs(clock: ClockView) -> list[tuple[Writer, int]]:
    """Entries in writer order, without zeros: the canonical form for encoding."""
    return sorted((writer, seq) for writer, seq in clock.items() if seq > 0)
