"""The simulator can fail: deliberately broken cores are caught on seeds the real core passes.

The core changes under these tests, and with it every run, so each mutant is
given a few seeds and must be caught on at least one that the real core
passes (the failure is then the mutation's doing).
"""

from __future__ import annotations

from causalkv.check import VerdictKind
from causalkv.core.effects import Output
from causalkv.core.replica import Replica
from causalkv.sim.runner import failure_report, run_seed
from causalkv.sim.simulation import SimOptions, SimResult, Simulation

SESSION_KINDS = {
    VerdictKind.READ_YOUR_WRITES.value,
    VerdictKind.MONOTONIC_READS.value,
    VerdictKind.MONOTONIC_WRITES.value,
    VerdictKind.WRITES_FOLLOW_READS.value,
    VerdictKind.CAUSAL_VISIBILITY.value,
}


def _verdict_kinds(message: str) -> set[str]:
    # "checker: read-your-writes x3, lost-write x1"
    parts = message.removeprefix("checker: ").split(", ")
    return {part.rsplit(" x", 1)[0] for part in parts}


def _caught(mutant: str, seeds: list[int]) -> list[SimResult]:
    """Results of ``mutant`` failing on seeds the real core passes."""
    caught = []
    for seed in seeds:
        result = run_seed(SimOptions(seed=seed, mutant=mutant))
        if not result.ok:
            real = run_seed(SimOptions(seed=seed))
            if real.ok:
                caught.append(result)
            else:
                print(f"seed {seed} fails with the real core too:\n{failure_report(real)}")
    return caught


def test_reads_that_skip_the_causal_wait_are_caught() -> None:
    caught = _caught("impatient-reads", [104, 108, 100])
    assert any(
        result.failure == "checker" and _verdict_kinds(result.message) & SESSION_KINDS
        for result in caught
    ), [result.summary_line() for result in caught]


def test_pushes_applied_without_storing_are_caught() -> None:
    caught = _caught("forgetful-pushes", [110, 103, 136])
    kinds = {result.failure for result in caught}
    assert "checker" in kinds or "liveness" in kinds, [r.summary_line() for r in caught]


def test_replies_before_durability_are_caught() -> None:
    caught = _caught("hasty-acks", [163, 223, 178, 240])
    assert caught, "hasty-acks passed every seed"
    assert {result.failure for result in caught} & {"checker", "invariant", "core-exception"}


class _Exploding(Replica):
    """Raises on its first tick after it served a view."""

    def tick(self, now_s: float) -> Output:
        if self.view is not None:
            raise RuntimeError("boom")
        return super().tick(now_s)


def test_a_core_exception_fails_the_seed_with_its_traceback() -> None:
    result = Simulation(SimOptions(seed=122), replica_class=_Exploding).run()
    assert result.failure == "core-exception"
    assert "RuntimeError: boom" in result.details
    assert result.trace_tail and "CORE RAISED" in result.trace_tail[-1]
