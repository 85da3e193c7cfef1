"""``causalkv dev``: a local cluster of real node processes, in the foreground."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from causalkv.local_cluster import LocalCluster, http_json, port_is_free

console = Console()


def dev(
    nodes: Annotated[int, typer.Option(min=1, max=64, help="Number of nodes")] = 6,
    shards: Annotated[int, typer.Option(min=1, max=64, help="Number of shards")] = 2,
    base_port: Annotated[int, typer.Option(min=1024, max=65000, help="Port of the first node")] = 8081,
    data_dir: Annotated[Path, typer.Option(help="Where the nodes keep their data and logs")] = Path(
        "causalkv-data/dev"
    ),
    storage: Annotated[str, typer.Option(help="sqlite (durable, default) or memory")] = "sqlite",
    fresh: Annotated[bool, typer.Option(help="Delete the data directory first")] = False,
) -> None:
    """Start a local cluster of NODES processes in SHARDS shards and keep it running."""
    if shards > nodes:
        raise typer.BadParameter("cannot have more shards than nodes")
    if storage not in ("sqlite", "memory"):
        raise typer.BadParameter("storage must be sqlite or memory")
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
    cluster = LocalCluster(nodes, shards, data_dir=data_dir, storage=storage, ports=ports)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    console.print(f"Starting {nodes} nodes in {shards} shards ({storage} storage in {data_dir}) ...")
    try:
        cluster.start()
        wanted = cluster.view_json()
        _, current = http_json("GET", f"{cluster.nodes[0].url}/view")
        if current and current.get("view") == wanted:
            console.print("The nodes already serve this view (recovered from their data).")
        else:
            cluster.install_view(wanted)
        _print_cluster(cluster)
        while not stopping:
            time.sleep(0.3)
            for node in cluster.nodes:
                if node.process is not None and not node.is_running() and not stopping:
                    code = node.process.returncode
                    console.print(
                        f"[yellow]node {node.node_id} ({node.address}) exited with status {code};"
                        f" log: {node.log_path}[/yellow]"
                    )
                    node.process = None
    except Exception as error:
        console.print(f"[red]{error}[/red]")
        cluster.stop()
        raise typer.Exit(1) from error
    console.print("\nStopping every node ...")
    cluster.stop()
    console.print("Stopped.")


def _print_cluster(cluster: LocalCluster) -> None:
    view = cluster.view_json()
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
        "       -d '{\"value\": \"hello\", \"causal-metadata\": {}}'\n"
        f"  curl {last}/data/greeting -H 'Content-Type: application/json' \\\n"
        "       -d '{\"causal-metadata\": {}}'\n"
        f"  curl {first}/data            # this shard's keys\n"
        f"  curl {first}/view\n"
        "\nPress Ctrl-C to stop every node."
    )


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)
