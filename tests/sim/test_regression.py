"""Fixed lists of seeds: regressions that must pass, known failures that must still fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from causalkv.sim.runner import failure_report, run_seed
from causalkv.sim.simulation import SimOptions

HERE = Path(__file__).parent


def _commands(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _id(command: str) -> str:
    return command.split("#", 1)[0].replace("causalkv sim ", "").strip()


@pytest.mark.parametrize("command", _commands("regression_seeds.txt"), ids=_id)
def test_regression_seed_passes(command: str) -> None:
    result = run_seed(SimOptions.from_command(command))
    assert result.ok, failure_report(result)


KNOWN_FAILING = _commands("known_failing_seeds.txt")

if KNOWN_FAILING:  # empty while no known bug is open

    @pytest.mark.slow
    @pytest.mark.parametrize(
        "command",
        [
            pytest.param(
                command, marks=pytest.mark.xfail(strict=True, reason=command.split("#", 1)[-1])
            )
            for command in KNOWN_FAILING
        ],
        ids=_id,
    )
    def test_known_failing_seed(command: str) -> None:
        result = run_seed(SimOptions.from_command(command))
        assert result.ok, failure_report(result)


def test_replay_commands_round_trip() -> None:
    options = SimOptions(
        seed=7, nodes=3, clients=2, keys=4, duration_s=6.5, crashes=False, mutant="hasty-acks"
    )
    assert SimOptions.from_command(options.replay_command()) == options
    assert options.replay_command() == (
        "causalkv sim --seed 7 --nodes 3 --clients 2 --keys 4 --duration 6.5 --no-crashes"
        " --mutant hasty-acks"
    )
