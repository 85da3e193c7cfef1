"""``causalkv sim`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from causalkv.cli import sim_command


def _app() -> typer.Typer:
    app = typer.Typer()
    sim_command.register(app)

    @app.command("other")
    def other() -> None:  # a second command keeps "sim" a subcommand
        """Placeholder."""

    return app


def test_one_seed_prints_the_seed_first_and_passes(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    result = CliRunner().invoke(_app(), ["sim", "--seed", "122", "--history", str(history)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "seed 122"
    assert lines[1].startswith("seed 122: ok")
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert records and {record["type"] for record in records} >= {"invoke", "ok"}
    assert any(record.get("final") for record in records)


def test_verbose_prints_the_trace() -> None:
    result = CliRunner().invoke(_app(), ["sim", "--seed", "122", "-v"])
    assert result.exit_code == 0
    assert "PUT /view #1" in result.output and "CONVERGED" in result.output


def test_a_failing_seed_prints_its_replay_command() -> None:
    result = CliRunner().invoke(
        _app(), ["sim", "--seed", "104", "--mutant", "impatient-reads", "--no-crashes"]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "seed 104"
    assert "FAILED (checker)" in result.output
    replay = "replay: causalkv sim --seed 104 --no-crashes --mutant impatient-reads"
    assert result.output.rstrip().splitlines()[-1] == replay


def test_a_sweep_summarises_failures_and_exits_non_zero() -> None:
    result = CliRunner().invoke(
        _app(), ["sim", "--seeds", "2", "--start", "103", "--mutant", "forgetful-pushes"]
    )
    lines = result.output.splitlines()
    assert lines[0] == "seeds 103..104 --mutant forgetful-pushes"
    assert result.exit_code == 1
    assert any(line.startswith("seed 103: FAIL") for line in lines)
    assert lines[-1].startswith("2 seeds, 2 failed")


def test_a_passing_sweep_exits_zero() -> None:
    result = CliRunner().invoke(_app(), ["sim", "--seeds", "2", "--start", "122"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("2 seeds, 0 failed")
