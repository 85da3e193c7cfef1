"""The simulator can fail: deliberately broken cores are caught on seeds the real core passes.

Each pinned seed is also in regression_seeds.txt (the real core passes it).
"""

from __future__ import annotations

import pytest

from causalkv.check import VerdictKind
from causalkv.core.effects import Output
from causalkv.core.replica import Replica
from causalkv.sim.runner import run_seed
from causalkv.sim.simulation import SimOptions, Simulation

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


@pytest.mark.parametrize("seed", [104, 108])
def test_reads_that_skip_the_causal_wait_are_caught(seed: int) -> None:
    assert run_seed(SimOptions(seed=seed)).ok
    result = run_seed(SimOptions(seed=seed, mutant="impatient-reads"))
    assert result.failure == "checker", result.message
    assert _verdict_kinds(result.message) & SESSION_KINDS


def test_pushes_applied_without_storing_are_caught_by_the_checker() -> None:
    result = run_seed(SimOptions(seed=110, mutant="forgetful-pushes"))
    assert result.failure == "checker", result.message
    assert "read-your-writes" in _verdict_kinds(result.message)


def test_pushes_applied_without_storing_are_caught_as_divergence() -> None:
    result = run_seed(SimOptions(seed=103, mutant="forgetful-pushes"))
    assert result.failure == "liveness", result.message
    assert "differ" in result.message


def test_replies_before_durability_are_caught_by_the_checker() -> None:
    result = run_seed(SimOptions(seed=178, mutant="hasty-acks"))
    assert result.failure == "checker", result.message


def test_pushes_before_durability_reissue_dots_after_a_crash() -> None:
    result = run_seed(SimOptions(seed=240, mutant="hasty-acks"))
    assert result.failure == "invariant", result.message
    assert "reissued" in result.message


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
