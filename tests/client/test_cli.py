"""The command line against a real cluster: get/put/delete/ls keep a causal session in a
file so consecutive commands are causal, `--json` gives scripts one document per command,
piped output is plain text, exit statuses are as documented, `view show` and `status`
report every node, and `view set` re-shards a cluster and reports the keys it moved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from causalkv import Client, Session
from causalkv.cli import client_commands, view_commands
from causalkv.local_cluster import LocalCluster
from tests.client.conftest import ClusterFactory


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    client_commands.register(app)
    view_commands.register(app)
    return app


@pytest.fixture
def cli(cluster: LocalCluster, tmp_path: Path) -> CliInvoker:
    return CliInvoker([node.address for node in cluster.nodes], tmp_path / "session")


class CliInvoker:
    def __init__(self, addresses: list[str], session_file: Path) -> None:
        self.app = build_app()
        self.runner = CliRunner()
        self.env = {
            "CAUSALKV_NODES": ",".join(addresses),
            "CAUSALKV_SESSION_FILE": str(session_file),
        }
        self.session_file = session_file

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = self.runner.invoke(self.app, list(args), env=self.env, input=stdin)
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        document = json.loads(self(*args, "--json", code=code).stdout)
        assert isinstance(document, dict)
        return document


def test_put_get_delete_are_causal_across_commands(cli: CliInvoker) -> None:
    assert cli("put", "cli-greeting", "hello").stdout.strip() != ""
    session = Session.from_export(cli.session_file.read_text())
    assert not session.is_empty()
    assert cli("get", "cli-greeting").stdout == "hello\n"
    document = cli.json("get", "cli-greeting")
    assert document.pop("node") in cli.env["CAUSALKV_NODES"].split(",")
    assert document == {"key": "cli-greeting", "found": True, "value": "hello"}
    cli("put", "cli-greeting", stdin="from stdin\n")
    assert cli("get", "cli-greeting").stdout == "from stdin\n"
    assert cli.json("delete", "cli-greeting") == {"key": "cli-greeting", "deleted": True}
    missing = cli.json("get", "cli-greeting", code=1)
    assert missing["found"] is False and missing["value"] is None
    cli("delete", "cli-greeting", code=1)
    # The session file only grows: it dominates what each command saw.
    assert (Session.from_export(cli.session_file.read_text()) | session).metadata == (
        Session.from_export(cli.session_file.read_text()).metadata
    )


def test_ls_lists_every_shard(cli: CliInvoker) -> None:
    for i in range(12):
        cli("put", f"cli-ls-{i:02d}", f"value\t{i}")
    document = cli.json("ls")
    items = document["items"]
    assert isinstance(items, dict)
    assert {k: v for k, v in items.items() if k.startswith("cli-ls-")} == {
        f"cli-ls-{i:02d}": f"value\t{i}" for i in range(12)
    }
    shards = document["shards"]
    assert isinstance(shards, dict) and sorted(shards) == ["s1", "s2"]
    # Piped output: one escaped "key<TAB>value" line per key, sorted.
    lines = [line for line in cli("ls").stdout.splitlines() if line.startswith("cli-ls-")]
    assert lines == [f"cli-ls-{i:02d}\tvalue\\t{i}" for i in range(12)]
    keys = [line for line in cli("ls", "--keys").stdout.splitlines() if line.startswith("cli-")]
    assert keys == [f"cli-ls-{i:02d}" for i in range(12)]
    only_s1 = cli.json("ls", "--shard", "s1")
    assert list(only_s1["shards"]) == ["s1"]
    cli("ls", "--shard", "nope", code=2)


def test_view_show_and_status(cli: CliInvoker, cluster: LocalCluster) -> None:
    shown = cli.json("view", "show")
    assert shown["epoch"] == 1
    shards = shown["shards"]
    assert isinstance(shards, list)
    assert [shard["name"] for shard in shards] == ["s1", "s2"]
    for shard in shards:
        assert shard["up"] == shard["replicas"] == 3
        assert all(node["health"] == "ok" for node in shard["nodes"])
    text = cli("view", "show").stdout
    assert "s1: 3/3 replicas up" in text and cluster.nodes[0].address in text

    status = cli.json("status")
    nodes = status["nodes"]
    assert isinstance(nodes, list) and len(nodes) == 6
    assert all(node["up"] and node["status"]["epoch"] == 1 for node in nodes)
    assert cluster.nodes[5].address in cli("status").stdout


def test_errors_have_exit_statuses_and_json(tmp_path: Path) -> None:
    cli = CliInvoker(["127.0.0.1:9"], tmp_path / "session")
    result = cli("get", "k", "--json", "--timeout", "1", code=3)
    assert json.loads(result.stdout)["kind"] == "Unavailable"
    cli("get", "", code=2)
    cli("put", "k", "v", "--nodes", "not an address", code=2)
    (tmp_path / "session").write_text("garbage")
    CliInvoker(["127.0.0.1:9"], tmp_path / "session")("get", "k", code=2)


def test_every_command_has_help() -> None:
    app = build_app()
    runner = CliRunner()
    for command in (["get"], ["put"], ["delete"], ["ls"], ["view", "show"], ["view", "set"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--json" in result.output
    assert runner.invoke(app, ["status", "--help"]).exit_code == 0


def test_view_set_reshards_and_reports_progress(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster()
    cli = CliInvoker([cluster.nodes[0].address], tmp_path / "session")
    with Client(cluster.nodes[0].address) as kv:
        for i in range(60):
            kv[f"move-{i}"] = "x" * 100
    dry = cli.json("view", "set", "--shards", "3", "--dry-run")
    assert dry["installed"] is False
    assert sorted(dry["view"]) == ["s1", "s2", "s3"]

    result = cli.json("view", "set", "--shards", "3")
    assert result["installed"] is True and result["epoch"] == 2
    moved = result["moved"]
    assert isinstance(moved, dict) and moved["versions"] > 0 and moved["bytes"] > 0
    shown = cli.json("view", "show")
    assert [shard["name"] for shard in shown["shards"]] == ["s1", "s2", "s3"]
    items = cli.json("ls")["items"]
    assert {k for k in items if k.startswith("move-")} == {f"move-{i}" for i in range(60)}

    # Back to two shards, from a YAML file, with human (piped) output.
    view_file = tmp_path / "view.yaml"
    view_file.write_text(yaml.safe_dump({"view": cluster.view_json()}))
    text = cli("view", "set", "--file", str(view_file)).stdout
    assert "view installed at epoch 3" in text and "moved" in text
    assert cli("get", "move-7").stdout == "x" * 100 + "\n"
    cli("view", "set", "--file", str(view_file), "--shards", "2", code=2)
