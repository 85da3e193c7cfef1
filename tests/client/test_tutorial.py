"""docs/tutorial.md is executed, so it cannot rot: against a real 6-node, 2-shard cluster,
every ```python block runs in order in one namespace (with CAUSALKV_NODES pointing at the
cluster), every `$ causalkv ...` line of a ```console block runs through the command
line (except `causalkv dev`, which the test replaces by its own cluster), and a
`<!-- tutorial-test: kill the node at address `NAME` -->` marker kills the node whose
address the tutorial's code stored in variable NAME."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from causalkv import Client, Session
from causalkv.local_cluster import LocalCluster
from tests.client.conftest import ClusterFactory, wait_until_replicated
from tests.client.test_cli import build_app

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w*)\s*$")
KILL_MARKER = re.compile(r"<!-- tutorial-test: kill the node at address `(\w+)` -->")


@dataclass
class Step:
    kind: str  # "python", "console" or "kill"
    text: str
    line: int


def tutorial_steps(markdown: str) -> list[Step]:
    steps: list[Step] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        marker = KILL_MARKER.search(lines[index])
        if marker:
            steps.append(Step("kill", marker.group(1), index + 1))
        fence = FENCE.match(lines[index])
        if fence:
            end = index + 1
            while not lines[end].startswith("```"):
                end += 1
            if fence.group(1) in ("python", "console"):
                steps.append(Step(fence.group(1), "\n".join(lines[index + 1 : end]), index + 2))
            index = end
        index += 1
    return steps


def run_console(step: Step, runner: CliRunner, env: dict[str, str]) -> None:
    app = build_app()
    for offset, line in enumerate(step.text.splitlines()):
        if not line.startswith("$ "):
            continue  # example output
        command = line[2:]
        where = f"docs/tutorial.md:{step.line + offset}: {command}"
        stdin = None
        pipe = re.match(r'^echo "(.*)" \| (causalkv .*)$', command)
        if pipe:
            stdin, command = pipe.group(1) + "\n", pipe.group(2)
        words = shlex.split(command)
        if words[0] != "causalkv" or words[1] == "dev":
            continue  # shell commands the test performs its own way
        result = runner.invoke(app, words[1:], env=env, input=stdin)
        assert result.exit_code == 0, f"{where}\n{result.output}\n{result.exception!r}"


def kill_after_replication(
    cluster: LocalCluster, namespace: dict[str, object], address: str
) -> None:
    """Kill the node at ``address`` once the other replicas of its shard hold everything
    the tutorial's sessions wrote (a reader gets at a write only through a live replica)."""
    merged = Session()
    for value in namespace.values():
        if isinstance(value, Client):
            merged |= value.session
    with Client(address) as client:
        view = client.view()
    shard_index = view.shard_index_of_node(address)
    assert shard_index is not None
    others = [a for a in view.replicas(shard_index) if a != address]
    wait_until_replicated(others, merged.metadata)
    next(node for node in cluster.nodes if node.address == address).kill()


def test_the_tutorial_runs(
    make_cluster: ClusterFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster: LocalCluster = make_cluster(6, 2)
    nodes = cluster.nodes[0].address
    monkeypatch.setenv("CAUSALKV_NODES", nodes)
    monkeypatch.chdir(tmp_path)  # the CLI's session file goes here
    env = {"CAUSALKV_NODES": nodes}
    runner = CliRunner()
    namespace: dict[str, object] = {"__name__": "tutorial"}
    steps = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    kinds = {step.kind for step in steps}
    assert kinds == {"python", "console", "kill"}, kinds
    for step in steps:
        if step.kind == "python":
            code = compile("\n" * (step.line - 1) + step.text, str(TUTORIAL), "exec")
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
            for line in printed.getvalue().splitlines():
                print("tutorial>", line)
        elif step.kind == "console":
            run_console(step, runner, env)
        else:
            kill_after_replication(cluster, namespace, str(namespace[step.text]))
    # The tutorial's own claims, checked once more from outside.
    assert namespace["photo"] == "sunset.jpg"
    assert namespace["victim"] not in (None, "")
