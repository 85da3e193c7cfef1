"""The deterministic simulator: a whole causalkv cluster on virtual time.

Real ``causalkv.core.Replica`` objects run on a simulated network, clock and
disk, under faults drawn from one seed, while simulated clients record a
history that ``causalkv.check`` judges. ``causalkv sim`` is the command line;
``loop.py`` explains the machinery, ``docs/testing.md`` the fault model and
how to run sweeps and replay seeds.
"""

from causalkv.sim.runner import SweepSummary, failure_report, run_seed, sweep
from causalkv.sim.simulation import SimOptions, SimResult, Simulation

__all__ = [
    "SimOptions",
    "SimResult",
    "Simulation",
    "SweepSummary",
    "failure_report",
    "run_seed",
    "sweep",
]
