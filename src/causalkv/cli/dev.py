"""``causalkv dev``: a local cluster of real node processes, in the foreground.

The foreground process supervises the nodes. Other invocations talk to it
through a small control directory inside the cluster's data directory
(``<data-dir>/control``): ``causalkv dev restart 3`` restarts node 3,
``causalkv dev kill 3`` SIGKILLs it (a crash), ``causalkv dev start 3`` starts it
again, and ``causalkv dev --nodes 9 --shards 3`` on a running cluster resizes it
(starting or stopping nodes and installing the new view) while showing the keys
moving.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from causalkv.local_cluster import LocalCluster, LocalNode, http_json, port_is_free

console = Console(soft_wrap=True)
dev_app = typer.Typer(
    help="A local cluster of real node processes on 127.0.0.1.",
    invoke_without_command=True,
    no_args_is_help=False,
)

DataDir = Annotated[
    Path, typer.Option(help="Where the nodes keep their data, logs and control files")
]
DEFAULT_DATA_DIR = Path("causalkv-data/dev")
STATE_FILE = "dev-cluster.json"


def _state(data_dir: Path) -> dict[str, Any] | None:
    """The running supervisor's state, if one is alive for this data directory."""
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state


@dev_app.callback()
def dev(
    context: typer.Context,
    nodes: Annotated[int, typer.Option(min=1, max=64, help="Number of nodes")] = 6,
    shards: Annotated[int, typer.Option(min=1, max=64, help="Number of shards")] = 2,
    base_port: Annotated[
        int, typer.Option(min=1024, max=65000, help="Port of the first node")
    ] = 8081,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    storage: Annotated[str, typer.Option(help="sqlite (durable, default) or memory")] = "sqlite",
    fresh: Annotated[bool, typer.Option(help="Delete the data directory first")] = False,
) -> None:
    """Start a local cluster of NODES processes in SHARDS shards and keep it running.

    On a cluster already running from the same data directory, resize it instead.
    """
    if context.invoked_subcommand is not None:
        return
    if shards > nodes:
        raise typer.BadParameter("cannot have more shards than nodes")
    if storage not in ("sqlite", "memory"):
        raise typer.BadParameter("storage must be sqlite or memory")
    if _state(data_dir) is not None:
        _resize(data_dir, nodes, shards)
        return
    ports = list(range(base_port, base_port + nodes))
    busy = [port for port in ports if not port_is_free(port)]
    if busy:
        console.print(
            f"[red]ports {', '.join(map(str, busy))} are in use[/red]; is another cluster running?"
            " Try --base-port."
        )
        raise typer.Exit(1)
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    _supervise(
        LocalCluster(nodes, shards, data_dir=data_dir, storage=storage, ports=ports), base_port
    )


def _supervise(cluster: LocalCluster, base_port: int) -> None:
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    data_dir = cluster.data_dir
    control = data_dir / "control"
    console.print(
        f"Starting {cluster.nodes_count} nodes in {cluster.shards_count} shards"
        f" ({cluster.storage} storage in {data_dir}) ..."
    )
    shards = cluster.shards_count
    try:
        cluster.start()
        wanted = cluster.view_json()
        _, current = http_json("GET", f"{cluster.nodes[0].url}/view")
        if current and current.get("view") == wanted:
            console.print("The nodes already serve this view (recovered from their data).")
        else:
            cluster.install_view(wanted)
        control.mkdir(parents=True, exist_ok=True)
        _write_state(cluster, base_port, shards)
        _print_cluster(cluster, wanted)
        expected_down: set[str] = set()
        while not stopping.is_set():
            stopping.wait(0.25)
            for request_file in sorted(control.glob("*.request.json")):
                shards = _handle(cluster, request_file, expected_down, shards, base_port)
            for node in cluster.nodes:
                if (
                    node.process is not None
                    and not node.is_running()
                    and node.node_id not in expected_down
                ):
                    console.print(
                        f"[yellow]node {node.node_id} ({node.address}) exited with status"
                        f" {node.process.returncode}; log: {node.log_path}[/yellow]"
                    )
                    expected_down.add(node.node_id)
    except Exception as error:
        console.print(f"[red]{error}[/red]")
        cluster.stop()
        raise typer.Exit(1) from error
    console.print("\nStopping every node ...")
    cluster.stop()
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    console.print("Stopped.")


def _write_state(cluster: LocalCluster, base_port: int, shards: int) -> None:
    state = {
        "pid": os.getpid(),
        "base_port": base_port,
        "shards": shards,
        "nodes": [
            {"id": node.node_id, "address": node.address, "running": node.is_running()}
            for node in cluster.nodes
        ],
    }
    (cluster.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def _handle(
    cluster: LocalCluster, request_file: Path, expected_down: set[str], shards: int, base_port: int
) -> int:
    try:
        request = json.loads(request_file.read_text())
    except (OSError, ValueError):
        return shards
    request_file.unlink(missing_ok=True)
    action = request.get("action")
    outcome: dict[str, Any] = {"ok": True}
    try:
        if action in ("restart", "kill", "start", "stop"):
            node = _node(cluster, str(request.get("node")))
            if action in ("restart", "stop"):
                expected_down.add(node.node_id)
                node.terminate()
            if action == "kill":
                expected_down.add(node.node_id)
                node.kill()
            if action in ("restart", "start"):
                if node.is_running():
                    raise ValueError(f"node {node.node_id} is already running")
                node.start()
                node.wait_ready(60)
                expected_down.discard(node.node_id)
            console.print(f"node {node.node_id} ({node.address}): {action} done")
        elif action == "resize":
            shards = _apply_resize(
                cluster, int(request["nodes"]), int(request["shards"]), expected_down
            )
        else:
            raise ValueError(f"unknown action {action!r}")
    except Exception as error:
        outcome = {"ok": False, "error": str(error)}
        console.print(f"[red]{action} failed: {error}[/red]")
    _write_state(cluster, base_port, shards)
    request_file.with_name(request_file.name.replace(".request.", ".done.")).write_text(
        json.dumps(outcome)
    )
    return shards


def _node(cluster: LocalCluster, name: str) -> LocalNode:
    for node in cluster.nodes:
        if name in (node.node_id, node.address, str(node.port)):
            return node
    raise ValueError(f"no node {name!r} (nodes: {', '.join(n.node_id for n in cluster.nodes)})")


def _apply_resize(cluster: LocalCluster, nodes: int, shards: int, expected_down: set[str]) -> int:
    if shards > nodes:
        raise ValueError("cannot have more shards than nodes")
    if nodes > len(cluster.nodes):
        base = cluster.nodes[0].port
        ports = [base + i for i in range(len(cluster.nodes), nodes)]
        busy = [p for p in ports if not port_is_free(p)]
        if busy:
            raise ValueError(f"ports {busy} are in use")
        added = cluster.add_nodes(nodes - len(cluster.nodes), ports)
        cluster.start(added)
    members = cluster.nodes[:nodes]
    view = cluster.view_json(members, shards)
    console.print(f"installing a view of {nodes} nodes in {shards} shards ...")
    cluster.install_view(view, via=members[0])
    for node in cluster.nodes[nodes:]:
        if node.is_running():
            expected_down.add(node.node_id)
            node.terminate()
    del cluster.nodes[nodes:]
    cluster.nodes_count, cluster.shards_count = nodes, shards
    _print_cluster(cluster, view)
    return shards


def _request(data_dir: Path, payload: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    state = _state(data_dir)
    if state is None:
        console.print(
            f"[red]no dev cluster is running from {data_dir}[/red] (start one with `causalkv dev`)"
        )
        raise typer.Exit(1)
    name = uuid.uuid4().hex
    control = data_dir / "control"
    temporary = control / f"{name}.tmp"
    temporary.write_text(json.dumps(payload))
    temporary.rename(control / f"{name}.request.json")
    done = control / f"{name}.done.json"
    deadline = time.monotonic() + timeout_s
    while not done.exists():
        if time.monotonic() > deadline:
            console.print("[red]the dev cluster did not answer in time[/red]")
            raise typer.Exit(1)
        time.sleep(0.1)
    outcome: dict[str, Any] = json.loads(done.read_text())
    done.unlink(missing_ok=True)
    return outcome


def _resize(data_dir: Path, nodes: int, shards: int) -> None:
    state = _state(data_dir)
    assert state is not None
    addresses = [n["address"] for n in state["nodes"]]
    console.print(f"Resizing the running dev cluster to {nodes} nodes in {shards} shards ...")
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            _request(data_dir, {"action": "resize", "nodes": nodes, "shards": shards})
        )
    )
    thread.start()
    with Progress(
        TextColumn("moving keys"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} keys"),
        TextColumn("{task.fields[bytes]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("handoff", total=1, bytes="", rate="")
        started = time.monotonic()
        while thread.is_alive():
            moved, total, moved_bytes = _handoff_totals(addresses, state["base_port"], nodes)
            elapsed = max(time.monotonic() - started, 1e-3)
            progress.update(
                task,
                completed=moved,
                total=max(total, 1),
                bytes=f"{moved_bytes / 1e6:.1f} MB",
                rate=f"{moved / elapsed:,.0f} keys/s",
            )
            thread.join(0.2)
        moved, total, moved_bytes = _handoff_totals(addresses, state["base_port"], nodes)
        progress.update(
            task, completed=moved, total=max(total, 1), bytes=f"{moved_bytes / 1e6:.1f} MB"
        )
    if not result.get("ok"):
        console.print(f"[red]resize failed: {result.get('error')}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]The cluster now runs {nodes} nodes in {shards} shards.[/green]")


def _handoff_totals(addresses: list[str], base_port: int, nodes: int) -> tuple[int, int, int]:
    candidates = set(addresses) | {f"127.0.0.1:{base_port + i}" for i in range(nodes)}
    moved = total = moved_bytes = 0
    for address in sorted(candidates):
        try:
            status, body = http_json("GET", f"http://{address}/status", timeout_s=0.5)
        except OSError:
            continue
        if status == 200:
            handoff = body.get("handoff", {})
            moved += handoff.get("versions_acked", 0)
            total += handoff.get("versions_total", 0)
            moved_bytes += handoff.get("bytes_acked", 0)
    return moved, total, moved_bytes


def _control_command(action: str, node: str, data_dir: Path) -> None:
    outcome = _request(data_dir, {"action": action, "node": node})
    if not outcome.get("ok"):
        console.print(f"[red]{outcome.get('error')}[/red]")
        raise typer.Exit(1)
    console.print(f"node {node}: {action} done")


@dev_app.command("restart")
def restart(
    node: Annotated[str, typer.Argument(help="Node id, address or port")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Restart one node of the running dev cluster (SIGTERM, then start it again)."""
    _control_command("restart", node, data_dir)


@dev_app.command("kill")
def kill(
    node: Annotated[str, typer.Argument(help="Node id, address or port")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Crash one node of the running dev cluster (SIGKILL)."""
    _control_command("kill", node, data_dir)


@dev_app.command("stop")
def stop(
    node: Annotated[str, typer.Argument(help="Node id, address or port")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Stop one node of the running dev cluster cleanly (SIGTERM)."""
    _control_command("stop", node, data_dir)


@dev_app.command("start")
def start(
    node: Annotated[str, typer.Argument(help="Node id, address or port")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Start a stopped or killed node of the running dev cluster again."""
    _control_command("start", node, data_dir)


def _print_cluster(cluster: LocalCluster, view: dict[str, list[dict[str, object]]]) -> None:
    table = Table(title="causalkv local cluster")
    table.add_column("node id", justify="right")
    table.add_column("address")
    table.add_column("shard")
    table.add_column("log")
    for shard, members in view.items():
        for member in members:
            node = next(n for n in cluster.nodes if n.address == member["address"])
            table.add_row(node.node_id, node.address, shard, str(node.log_path))
    console.print(table)
    first = cluster.nodes[0].url
    last = cluster.nodes[-1].url
    console.print(
        "\nTry it (any node answers for any key):\n"
        f"  curl -X PUT {first}/data/greeting -H 'Content-Type: application/json' \\\n"
        '       -d \'{"value": "hello", "causal-metadata": {}}\'\n'
        f"  curl {last}/data/greeting -H 'Content-Type: application/json' \\\n"
        "       -d '{\"causal-metadata\": {}}'\n"
        f"  curl {first}/data            # this shard's keys\n"
        f"  curl {first}/view\n"
        f"\nDashboard: {first}/dashboard\n"
        "Restart or crash a node from another terminal: causalkv dev restart 2 | causalkv dev kill 2\n"
        "Resize while it runs: causalkv dev --nodes 9 --shards 3\n"
        "Press Ctrl-C to stop every node."
    )


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
