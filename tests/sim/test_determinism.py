"""Same seed, same code: same run, event for event."""

from __future__ import annotations

import os
import subprocess
import sys

from causalkv.sim.runner import run_seed
from causalkv.sim.simulation import SimOptions, Simulation


def _trace(options: SimOptions) -> tuple[list[str], str, list[bytes]]:
    lines: list[str] = []
    simulation = Simulation(options, echo=lines.append)
    result = simulation.run()
    history = [line.process.encode() + repr(line).encode() for line in simulation.recorder.lines()]
    return lines, result.digest, history


def test_a_seed_replays_event_for_event() -> None:
    # Seed 100 has a restart, partitions, duplication and reordering.
    options = SimOptions(seed=100)
    first_lines, first_digest, first_history = _trace(options)
    second_lines, second_digest, second_history = _trace(options)
    assert len(first_lines) > 1_000
    assert first_lines == second_lines
    assert first_history == second_history
    assert first_digest == second_digest


def test_different_seeds_differ() -> None:
    assert run_seed(SimOptions(seed=1)).digest != run_seed(SimOptions(seed=2)).digest


def test_digest_does_not_depend_on_hash_randomization() -> None:
    """A replay in another process (another PYTHONHASHSEED) gives the same run."""
    code = (
        "from causalkv.sim.runner import run_seed\n"
        "from causalkv.sim.simulation import SimOptions\n"
        "print(run_seed(SimOptions(seed=108)).digest)\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        output = subprocess.run(
            [sys.executable, "-c", code],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(output.stdout.strip())
    assert digests == {run_seed(SimOptions(seed=108)).digest}
