"""A sweep of seeds the suite has never run before: new ground on every run.

The fixed lists (test_regression.py) guard the bugs already found; this sweep
looks for new ones. It starts at a random seed (printed, with the command that
repeats the sweep, and every failing seed's replay command in the failure), so
each CI run explores different schedules. Set ``CAUSALKV_SIM_SWEEP_START`` to
repeat a sweep and ``CAUSALKV_SIM_SWEEP_SEEDS`` to change its size (0 skips it).
"""

from __future__ import annotations

import os
import random

import pytest

from causalkv.sim.runner import sweep
from causalkv.sim.simulation import SimOptions

SEEDS_DEFAULT = 200


def test_a_sweep_of_new_random_seeds_passes() -> None:
    count = int(os.environ.get("CAUSALKV_SIM_SWEEP_SEEDS", SEEDS_DEFAULT))
    if count <= 0:
        pytest.skip("CAUSALKV_SIM_SWEEP_SEEDS=0")
    start_text = os.environ.get("CAUSALKV_SIM_SWEEP_START")
    # Far above the seeds the fixed lists use, so each run explores new ground.
    start = int(start_text) if start_text else random.SystemRandom().randrange(10**6, 10**9)
    print(f"sweep: causalkv sim --seeds {count} --start {start} --jobs 2")
    summary = sweep(SimOptions(seed=start), start, count, jobs=min(2, os.cpu_count() or 1))
    assert summary.seeds == count
    assert summary.ok, (
        f"{len(summary.failed)} of {count} seeds failed (sweep: causalkv sim --seeds {count}"
        f" --start {start}); add each to tests/sim/regression_seeds.txt once fixed:\n"
        + "\n".join(
            f"{result.summary_line()}  |  {result.options.replay_command()}"
            for result in summary.failed
        )
    )
