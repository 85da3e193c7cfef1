"""Sweeps beyond the fixed lists: a pinned block of seeds and a random one.

The fixed lists (test_regression.py) guard the bugs already found, one seed
each. On top of them every run goes through

* a pinned block of 300 consecutive seeds (each draws its own cluster,
  workload and faults), the same every time, so that a change that breaks one
  of those schedules fails here reproducibly; and
* a block of 200 seeds from a random start, different every run, so that CI
  keeps exploring schedules nobody has run before. A failure prints the replay
  command of each failing seed; add it to a list (docs/testing.md).

``CAUSALKV_SIM_SWEEP_SEEDS`` and ``CAUSALKV_SIM_SWEEP_START`` change the pinned
block (``CAUSALKV_SIM_SWEEP_START=random`` draws it too);
``CAUSALKV_SIM_RANDOM_SEEDS`` and ``CAUSALKV_SIM_RANDOM_START`` the random one
(0 seeds skips a block).
"""

from __future__ import annotations

import os
import random

import pytest

from causalkv.sim.runner import sweep
from causalkv.sim.simulation import SimOptions

PINNED_START = 21126
PINNED_SEEDS = 300
RANDOM_SEEDS = 200


def _start(variable: str, default: int | None) -> int:
    """The block's first seed: the variable's number, else ``default``; a fresh
    random one for ``random`` or when there is no default."""
    text = os.environ.get(variable) or ("random" if default is None else str(default))
    if text == "random":
        return random.SystemRandom().randrange(10**6, 10**9)
    return int(text)


def _run_block(count: int, start: int) -> None:
    print(f"sweep: causalkv sim --seeds {count} --start {start} --jobs 2")
    summary = sweep(SimOptions(seed=start), start, count, jobs=min(2, os.cpu_count() or 1))
    assert summary.seeds == count
    assert summary.ok, (
        f"{len(summary.failed)} of {count} seeds failed (sweep: causalkv sim --seeds {count}"
        f" --start {start}):\n"
        + "\n".join(
            f"{result.summary_line()}  |  {result.options.replay_command()}"
            for result in summary.failed
        )
    )


def test_a_pinned_block_of_seeds_passes() -> None:
    count = int(os.environ.get("CAUSALKV_SIM_SWEEP_SEEDS", PINNED_SEEDS))
    if count <= 0:
        pytest.skip("CAUSALKV_SIM_SWEEP_SEEDS=0")
    _run_block(count, _start("CAUSALKV_SIM_SWEEP_START", PINNED_START))


def test_a_block_of_random_seeds_passes() -> None:
    count = int(os.environ.get("CAUSALKV_SIM_RANDOM_SEEDS", RANDOM_SEEDS))
    if count <= 0:
        pytest.skip("CAUSALKV_SIM_RANDOM_SEEDS=0")
    _run_block(count, _start("CAUSALKV_SIM_RANDOM_START", None))
