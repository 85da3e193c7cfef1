"""Plain-text rendering of a check result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from causalkv.check.verdicts import Verdict, VerdictKind

if TYPE_CHECKING:
    from causalkv.check.result import HistoryStatistics

_ROLE_WIDTH = 22


def render_report(
    ok: bool,
    statistics: HistoryStatistics,
    verdicts: Sequence[Verdict],
    limit_per_kind: int = 20,
) -> str:
    """Headline, per-kind counts, then the verdicts of each kind with their operations."""
    size = (
        f"{statistics.operations:,} operations ({statistics.processes} processes, "
        f"{statistics.keys} keys, {statistics.final_reads} final reads)"
    )
    if ok:
        return (
            f"causalkv check: VALID: {size} are causally consistent, "
            f"converge and lose no acknowledged write "
            f"(checked in {statistics.check_seconds:.2f} s)\n"
        )
    by_kind: dict[VerdictKind, list[Verdict]] = {}
    for verdict in verdicts:
        by_kind.setdefault(verdict.kind, []).append(verdict)
    lines = [
        f"causalkv check: INVALID: {len(verdicts)} violation(s) in {size} "
        f"(checked in {statistics.check_seconds:.2f} s)",
    ]
    lines.extend(f"  {kind.value:<22} {len(group)}" for kind, group in by_kind.items())
    for kind, group in by_kind.items():
        lines.append("")
        lines.append(f"{kind.value} ({len(group)})")
        for number, verdict in enumerate(group[:limit_per_kind], start=1):
            lines.append(f"  {number}. {verdict.message}")
            lines.extend(
                f"       {reference.role:<{_ROLE_WIDTH}} {reference.describe()}"
                for reference in verdict.operations
            )
        hidden = len(group) - limit_per_kind
        if hidden > 0:
            lines.append(f"  ... and {hidden} more (use --json to see every verdict)")
    return "\n".join(lines) + "\n"
