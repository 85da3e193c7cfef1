"""``causalkv check``: exit status, text report and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from causalkv.check import HistoryRecorder
from causalkv.cli import check_command


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()

    @application.callback()
    def main() -> None:
        """Keep `check` a subcommand even when it is the only one."""

    check_command.register(application)
    return application


def write_history(path: Path, stale: bool) -> Path:
    with HistoryRecorder(path) as recorder:
        recorder.ok(recorder.invoke("p1", "put", "k", "v1", "n1"))
        recorder.ok(recorder.invoke("p1", "put", "k", "v2", "n1"))
        recorder.ok(recorder.invoke("p1", "get", "k", None, "n1"), "v1" if stale else "v2")
    return path


def test_valid_history_exits_zero(app: typer.Typer, tmp_path: Path) -> None:
    path = write_history(tmp_path / "valid.jsonl", stale=False)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "VALID" in result.output


def test_violation_exits_one_with_a_report(app: typer.Typer, tmp_path: Path) -> None:
    path = write_history(tmp_path / "stale.jsonl", stale=True)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "INVALID" in result.output
    assert "read-your-writes" in result.output
    assert "lines 5-6" in result.output


def test_json_output(app: typer.Typer, tmp_path: Path) -> None:
    path = write_history(tmp_path / "stale.jsonl", stale=True)
    result = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["counts"] == {"read-your-writes": 1}
    [verdict] = report["verdicts"]
    assert verdict["kind"] == "read-your-writes"
    assert [operation["role"] for operation in verdict["operations"]] == [
        "read",
        "version read",
        "overwriting write",
    ]


def test_malformed_history_exits_two(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"process": "p1"}\n')
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "line 1" in result.output


def test_malformed_history_as_json(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text("not json\n")
    result = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["malformed"] is True and report["error"].startswith("line 1")


def test_missing_file_exits_two(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_report_is_limited_per_kind(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    with HistoryRecorder(path) as recorder:
        recorder.ok(recorder.invoke("p1", "put", "k", "v1", "n1"))
        recorder.ok(recorder.invoke("p1", "put", "k", "v2", "n1"))
        for _ in range(5):
            recorder.ok(recorder.invoke("p1", "get", "k", None, "n1"), "v1")
    result = CliRunner().invoke(app, ["check", str(path), "--limit", "2"])
    assert result.exit_code == 1
    assert "... and 3 more" in result.output
