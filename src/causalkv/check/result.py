"""The outcome of a check: verdicts, counts, statistics, text and JSON forms."""

from __future__ import annotations

import msgspec

from causalkv.check.report import render_report
from causalkv.check.verdicts import Verdict, VerdictKind


class HistoryStatistics(msgspec.Struct, frozen=True):
    """Size of the judged history, and how long judging took."""

    operations: int
    processes: int
    keys: int
    observations: int
    """Key observations made by ok reads (one per get, per list item, per covered absence)."""
    final_reads: int
    check_seconds: float


class CheckResult(msgspec.Struct, frozen=True):
    """Verdicts on a history; ``ok`` is true iff there are none."""

    ok: bool
    counts: dict[str, int]
    """Number of verdicts per kind (only kinds that occur)."""
    statistics: HistoryStatistics
    verdicts: tuple[Verdict, ...]
    """Sorted by kind (in `VerdictKind` order), then by first line."""

    @classmethod
    def from_verdicts(cls, verdicts: list[Verdict], statistics: HistoryStatistics) -> CheckResult:
        ranking = {kind: rank for rank, kind in enumerate(VerdictKind)}
        ordered = sorted(verdicts, key=lambda verdict: (ranking[verdict.kind], verdict.first_line))
        counts: dict[str, int] = {}
        for verdict in ordered:
            counts[verdict.kind.value] = counts.get(verdict.kind.value, 0) + 1
        return cls(ok=not ordered, counts=counts, statistics=statistics, verdicts=tuple(ordered))

    @property
    def kinds(self) -> set[VerdictKind]:
        """The kinds of violation found."""
        return {verdict.kind for verdict in self.verdicts}

    def of_kind(self, kind: VerdictKind) -> list[Verdict]:
        """The verdicts of one kind."""
        return [verdict for verdict in self.verdicts if verdict.kind is kind]

    def render(self, limit_per_kind: int = 20) -> str:
        """A readable report, showing at most ``limit_per_kind`` verdicts per kind."""
        return render_report(self.ok, self.statistics, self.verdicts, limit_per_kind)

    def to_json(self) -> bytes:
        """The whole result as JSON (every verdict, no limit)."""
        return msgspec.json.encode(self)
