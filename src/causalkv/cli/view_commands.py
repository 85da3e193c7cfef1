"""``causalkv view show / view set`` and ``causalkv status``: the operator's commands.

``view show`` draws the view as a table: shards, their nodes, each node's health
(``/ping`` and ``/status``) and the keys each holds. ``status`` summarises every
node. ``view set`` installs a new view, built from ``--shards``/``--nodes`` or
read from a JSON or YAML file, and while the nodes move keys it polls every
node's ``/status`` and shows the hand-off progress (versions and bytes moved,
rate) until ``PUT /view`` answers.

These commands use the asyncio client, so that probing many nodes, and
watching a view change while it happens, run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from causalkv.cli.client_commands import (
    DEFAULT_NODES,
    EXIT_BAD_INPUT,
    JsonOption,
    NodesOption,
    Output,
    client_settings,
    fail,
    reporting_errors,
)
from causalkv.client import AsyncClient, BadRequest, NodeProbe, Unavailable, parse_addresses
from causalkv.core.view import View, ViewError, parse_sharded_view

PROGRESS_POLL_S = 0.25

view_app = typer.Typer(
    name="view",
    help="Show or change the view: which shards exist and which nodes replicate each.",
    no_args_is_help=True,
)

ProbeTimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each node's answer.")
]
ClusterSecretOption = Annotated[
    str | None,
    typer.Option(
        "--cluster-secret",
        envvar="CAUSALKV_CLUSTER_SECRET",
        help="Bearer secret for PUT /view, if the cluster has one.",
        show_envvar=True,
    ),
]


# -- reading node snapshots --------------------------------------------------------------------------


def _number(status: dict[str, Any] | None, *path: str) -> int:
    value: Any = status
    for name in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def health_of(probe: NodeProbe, epoch_max: int, expected_shard: str | None) -> str:
    """One word (or two) on a node's state, judged against the newest epoch seen."""
    if not probe.up:
        return "down"
    status = probe.status
    if status is None:
        return "up (no status)"
    epoch = _number(status, "epoch")
    if epoch == 0:
        return "no view"
    if status.get("change"):
        return "changing view"
    if epoch < epoch_max:
        return f"behind (epoch {epoch})"
    if expected_shard is not None and status.get("shard") != expected_shard:
        return "wrong shard"
    return "ok"


HEALTH_STYLES = {"ok": None, "down": "red", "no view": "yellow", "changing view": "cyan"}


def style_of(health: str) -> str | None:
    """Row style for a health word."""
    return HEALTH_STYLES.get(health, "yellow")


def node_document(probe: NodeProbe, health: str) -> dict[str, Any]:
    """The JSON form of one node in ``view show``."""
    status = probe.status or {}
    return {
        "address": probe.address,
        "id": status.get("node_id"),
        "up": probe.up,
        "health": health,
        "ping_ms": probe.ping_ms,
        "epoch": status.get("epoch"),
        "shard": status.get("shard"),
        "keys": status.get("keys"),
        "live_keys": status.get("live_keys"),
        "tombstones": status.get("tombstones"),
        "change": status.get("change"),
        "error": probe.error,
    }


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


# -- view show ---------------------------------------------------------------------------------------


async def _view_and_probes(
    seeds: tuple[str, ...], timeout_s: float
) -> tuple[View, list[NodeProbe]]:
    async with AsyncClient(seeds, settings=client_settings(timeout_s)) as client:
        view = await client.view(refresh=True)
        probes = await client.probe_all(list(view.all_addresses()))
    return view, probes


@view_app.command("show")
def show(
    nodes: NodesOption = DEFAULT_NODES,
    timeout: ProbeTimeoutOption = 2.0,
    json_output: JsonOption = False,
) -> None:
    """Show the view: shards, their nodes, health and keys."""
    output = Output(json_output)
    with reporting_errors(output):
        view, probes = asyncio.run(_view_and_probes(parse_addresses(nodes), timeout))
    by_address = {probe.address: probe for probe in probes}
    epoch_max = max((_number(probe.status, "epoch") for probe in probes), default=0)
    shards: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    styles: list[str | None] = []
    for index, shard in enumerate(view.shards):
        members: list[dict[str, Any]] = []
        live_counts: list[int] = []
        for node in shard.nodes:
            probe = by_address[node.address]
            health = health_of(probe, epoch_max, shard.name)
            document = node_document(probe, health)
            document["id"] = node.node_id
            members.append(document)
            if probe.status is not None:
                live_counts.append(_number(probe.status, "live_keys"))
            rows.append(
                [
                    shard.name,
                    node.node_id,
                    node.address,
                    health,
                    _cell(probe.ping_ms),
                    _cell(document["epoch"]),
                    _cell(document["live_keys"]),
                    _cell(document["tombstones"]),
                ]
            )
            styles.append(style_of(health))
        up = sum(1 for member in members if member["up"])
        shards.append(
            {
                "name": shard.name,
                "index": index,
                "replicas": len(members),
                "up": up,
                "live_keys": max(live_counts, default=None),
                "live_keys_min": min(live_counts, default=None),
                "nodes": members,
            }
        )
    if output.json_mode:
        output.json({"epoch": epoch_max, "shards": shards})
        return
    output.table(
        ["shard", "id", "address", "health", "ping ms", "epoch", "keys", "tombstones"],
        rows,
        title=f"view at epoch {epoch_max}: {len(view.shards)} shards, {len(probes)} nodes",
        styles=styles,
    )
    for shard_document in shards:
        low, high = shard_document["live_keys_min"], shard_document["live_keys"]
        keys = "unknown" if high is None else str(high) if low == high else f"{low}-{high}"
        output.text(
            f"{shard_document['name']}: {shard_document['up']}/{shard_document['replicas']}"
            f" replicas up, {keys} key{'' if keys == '1' else 's'}",
            style="bold" if shard_document["up"] == shard_document["replicas"] else "yellow",
        )


# -- status ------------------------------------------------------------------------------------------


async def _all_probes(seeds: tuple[str, ...], timeout_s: float) -> list[NodeProbe]:
    async with AsyncClient(seeds, settings=client_settings(timeout_s)) as client:
        addresses = list(seeds)
        try:
            view = await client.view(refresh=True)
        except Unavailable:
            view = None
        if view is not None:
            addresses = [*view.all_addresses(), *(a for a in seeds if not view.contains(a))]
        return await client.probe_all(addresses)


def status(
    nodes: NodesOption = DEFAULT_NODES,
    timeout: ProbeTimeoutOption = 2.0,
    json_output: JsonOption = False,
) -> None:
    """Summarise every node of the view (and the seed nodes): health, keys, hand-off, counters."""
    output = Output(json_output)
    with reporting_errors(output):
        probes = asyncio.run(_all_probes(parse_addresses(nodes), timeout))
    epoch_max = max((_number(probe.status, "epoch") for probe in probes), default=0)
    if output.json_mode:
        output.json(
            {
                "epoch": epoch_max,
                "nodes": [
                    {
                        "address": probe.address,
                        "up": probe.up,
                        "ping_ms": probe.ping_ms,
                        "error": probe.error,
                        "status": probe.status,
                    }
                    for probe in probes
                ],
            }
        )
        return
    rows: list[list[str]] = []
    styles: list[str | None] = []
    for probe in probes:
        health = health_of(probe, epoch_max, None)
        snapshot = probe.status
        if snapshot is None:
            rows.append([probe.address, "-", "-", health, *["-"] * 7])
        else:
            handoff = f"{_number(snapshot, 'handoff', 'versions_acked')}/" + str(
                _number(snapshot, "handoff", "versions_total")
            )
            rows.append(
                [
                    probe.address,
                    _cell(snapshot.get("node_id")),
                    _cell(snapshot.get("shard")),
                    health,
                    _cell(snapshot.get("epoch")),
                    _cell(snapshot.get("live_keys")),
                    _cell(snapshot.get("tombstones")),
                    _cell(snapshot.get("waiting_requests")),
                    str(_number(snapshot, "counters", "forwarded_requests")),
                    handoff,
                    _cell(snapshot.get("uptime_s")),
                ]
            )
        styles.append(style_of(health))
    output.table(
        [
            "address",
            "id",
            "shard",
            "health",
            "epoch",
            "live",
            "tombstones",
            "waiting",
            "forwarded",
            "handoff",
            "uptime s",
        ],
        rows,
        title=f"{len(probes)} nodes, newest epoch {epoch_max}",
        styles=styles,
    )


# -- view set ----------------------------------------------------------------------------------------


def read_view_file(path: Path) -> object:
    """A view from a JSON or YAML file: ``{shard: [...]}``, ``{"view": ...}`` or a list."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadRequest(f"cannot read {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise BadRequest(f"{path} is neither JSON nor YAML: {error}") from error
    if isinstance(document, dict) and set(document) == {"view"}:
        document = document["view"]
    return document


def shard_names(count: int, current: View | None) -> list[str]:
    """``count`` shard names: the current view's first (keeps their keys in place), then new."""
    existing = [] if current is None else [shard.name for shard in current.shards]
    names = existing[:count]
    number = 1
    while len(names) < count:
        candidate = f"s{number}"
        if candidate not in names and candidate not in existing:
            names.append(candidate)
        number += 1
    return names


def deal_view(
    names: list[str], addresses: list[str], ids: dict[str, str]
) -> dict[str, list[dict[str, object]]]:
    """Nodes dealt to shards in contiguous blocks, in the order given (as ``causalkv dev`` does)."""
    view: dict[str, list[dict[str, object]]] = {name: [] for name in names}
    for position, address in enumerate(addresses):
        name = names[position * len(names) // len(addresses)]
        node_id = ids[address]
        view[name].append(
            {"address": address, "id": int(node_id) if node_id.isdigit() else node_id}
        )
    return view


async def _current_view(client: AsyncClient) -> View | None:
    try:
        return await client.view(refresh=True)
    except Unavailable:
        return None


async def build_view(
    client: AsyncClient, shards: int | None, addresses: list[str] | None
) -> tuple[dict[str, list[dict[str, object]]], View | None]:
    """The view asked for on the command line, with node ids learned from /status."""
    current = await _current_view(client)
    if addresses is None:
        if current is None:
            raise BadRequest("no view is installed yet: give the nodes with --nodes")
        addresses = list(current.all_addresses())
    if shards is None:
        shards = 1 if current is None else len(current.shards)
    if not 1 <= shards <= len(addresses):
        raise BadRequest(f"need between 1 and {len(addresses)} shards for {len(addresses)} nodes")
    ids: dict[str, str] = {}
    for probe in await client.probe_all(addresses):
        node_id = (probe.status or {}).get("node_id")
        if isinstance(node_id, str | int) and str(node_id):
            ids[probe.address] = str(node_id)
        elif current is not None and (spec := _spec_for(current, probe.address)) is not None:
            ids[probe.address] = spec
        else:
            raise BadRequest(
                f"cannot learn the id of {probe.address} ({probe.error or 'no /status'});"
                " start it, or give the whole view in a file with --file"
            )
    return deal_view(shard_names(shards, current), addresses, ids), current


def _spec_for(view: View, address: str) -> str | None:
    for shard in view.shards:
        for node in shard.nodes:
            if node.address == address:
                return node.node_id
    return None


@dataclass
class HandoffTotals:
    """Hand-off progress summed over the nodes, for the view change under way."""

    versions_total: int = 0
    versions_acked: int = 0
    bytes_total: int = 0
    bytes_acked: int = 0
    epoch: int = 0

    @classmethod
    def from_probes(cls, probes: list[NodeProbe], base_epoch: int) -> HandoffTotals:
        """Sum ``handoff`` of every node whose hand-off targets an epoch after ``base_epoch``."""
        totals = cls()
        for probe in probes:
            handoff = (probe.status or {}).get("handoff")
            if not isinstance(handoff, dict):
                continue
            epoch = _number(handoff, "epoch")
            if epoch <= base_epoch:
                continue
            totals.epoch = max(totals.epoch, epoch)
            totals.versions_total += _number(handoff, "versions_total")
            totals.versions_acked += _number(handoff, "versions_acked")
            totals.bytes_total += _number(handoff, "bytes_total")
            totals.bytes_acked += _number(handoff, "bytes_acked")
        return totals


def human_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


async def install_view(
    client: AsyncClient,
    view: dict[str, list[dict[str, object]]],
    via: list[str],
    watched: list[str],
    output: Output,
) -> tuple[dict[str, Any], HandoffTotals, float, int]:
    """PUT the view and, while it runs, poll every watched node's hand-off progress."""
    before = await client.probe_all(watched)
    base_epoch = max((_number(probe.status, "epoch") for probe in before), default=0)
    started_s = time.monotonic()
    change = asyncio.ensure_future(client.set_view(view, via))
    totals = HandoffTotals()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[moved]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=output.console,
        transient=False,
        disable=not output.fancy,
    )
    with progress:
        task = progress.add_task("moving keys", total=None, count="", moved="", rate="")
        while not change.done():
            await asyncio.wait({change}, timeout=PROGRESS_POLL_S)
            totals = HandoffTotals.from_probes(await client.probe_all(watched), base_epoch)
            elapsed_s = max(time.monotonic() - started_s, 1e-6)
            progress.update(
                task,
                total=max(totals.versions_total, totals.versions_acked) or None,
                completed=totals.versions_acked,
                count=f"{totals.versions_acked}/{totals.versions_total} versions",
                moved=f"{human_bytes(totals.bytes_acked)}/{human_bytes(totals.bytes_total)}",
                rate=f"{totals.versions_acked / elapsed_s:,.0f} versions/s",
            )
        result = change.result()
        final = HandoffTotals.from_probes(await client.probe_all(watched), base_epoch)
        if final.versions_acked >= totals.versions_acked:
            totals = final
        progress.update(
            task,
            description="view installed",
            total=max(totals.versions_total, totals.versions_acked, 1),
            completed=max(totals.versions_acked, totals.versions_total, 1),
        )
    return result, totals, time.monotonic() - started_s, base_epoch


async def _set_view(
    seeds: tuple[str, ...],
    shards: int | None,
    addresses: list[str] | None,
    file: Path | None,
    via: str | None,
    dry_run: bool,
    settings_timeout_s: float,
    cluster_secret: str | None,
    output: Output,
) -> dict[str, Any]:
    contacts = tuple(dict.fromkeys([*(addresses or []), *seeds]))
    settings = client_settings(settings_timeout_s, cluster_secret=cluster_secret)
    async with AsyncClient(contacts, settings=settings) as client:
        if file is not None:
            raw = read_view_file(file)
            current = await _current_view(client)
        else:
            raw, current = await build_view(client, shards, addresses)
        try:
            parsed = parse_sharded_view(raw)
        except ViewError as error:
            raise BadRequest(f"malformed view: {error}") from error
        view = parsed.to_sharded_json()
        if dry_run:
            return {"view": view, "installed": False}
        new_addresses = list(parsed.all_addresses())
        old_addresses = [] if current is None else list(current.all_addresses())
        watched = list(dict.fromkeys([*old_addresses, *new_addresses]))
        targets = [via] if via is not None else new_addresses
        result, totals, seconds, base_epoch = await install_view(
            client, view, targets, watched, output
        )
        return {
            "view": result.get("view", view),
            "installed": True,
            "epoch": totals.epoch or base_epoch + 1,
            "moved": {
                "versions": totals.versions_acked,
                "versions_total": totals.versions_total,
                "bytes": totals.bytes_acked,
            },
            "seconds": round(seconds, 3),
        }


@view_app.command("set")
def set_view(
    shards: Annotated[
        int | None,
        typer.Option("--shards", min=1, max=256, help="Number of shards (default: as now)."),
    ] = None,
    new_nodes: Annotated[
        str | None,
        typer.Option(
            "--nodes",
            help="Nodes of the new view, comma-separated host:port, dealt to shards in order"
            " (default: the current view's nodes).",
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read the view from a JSON or YAML file instead.", dir_okay=False
        ),
    ] = None,
    via: Annotated[
        str | None, typer.Option("--via", help="Send PUT /view to this node (default: any).")
    ] = None,
    seeds: Annotated[
        str,
        typer.Option(
            "--seeds",
            envvar="CAUSALKV_NODES",
            help="Nodes to read the current view from.",
            show_envvar=True,
        ),
    ] = DEFAULT_NODES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the view that would be installed, and stop.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1.0, help="Seconds to wait for the view change."),
    ] = 600.0,
    cluster_secret: ClusterSecretOption = None,
    json_output: JsonOption = False,
) -> None:
    """Install a new view and show the keys moving until every node serves it.

    Re-deal the current nodes into three shards: causalkv view set --shards 3

    Choose the nodes: causalkv view set --nodes a:8081,b:8081,c:8081,d:8081 --shards 2

    From a file: causalkv view set --file view.yaml
    """
    output = Output(json_output)
    if file is not None and (shards is not None or new_nodes is not None):
        fail(output, "give either --file or --shards/--nodes, not both", EXIT_BAD_INPUT)
    with reporting_errors(output):
        addresses = None if new_nodes is None else list(parse_addresses(new_nodes))
        seed_addresses = parse_addresses(seeds)
        via_address = None if via is None else parse_addresses(via)[0]
        outcome = asyncio.run(
            _set_view(
                seed_addresses,
                shards,
                addresses,
                file,
                via_address,
                dry_run,
                timeout,
                cluster_secret,
                output,
            )
        )
    if output.json_mode:
        output.json(outcome)
        return
    view = outcome["view"]
    rows = [
        [name, _cell(member.get("id")), _cell(member.get("address"))]
        for name, members in view.items()
        for member in members
    ]
    if not outcome["installed"]:
        output.table(["shard", "id", "address"], rows, title="view (dry run, not installed)")
        return
    moved = outcome["moved"]
    seconds = max(outcome["seconds"], 1e-6)
    output.table(
        ["shard", "id", "address"], rows, title=f"view installed at epoch {outcome['epoch']}"
    )
    output.text(
        f"moved {moved['versions']} versions ({human_bytes(moved['bytes'])}) in {seconds:.1f} s"
        f" ({moved['versions'] / seconds:,.0f} versions/s)",
        style="green",
    )


def register(app: typer.Typer) -> None:
    """Add ``view show``, ``view set`` and ``status`` to ``app``."""
    app.add_typer(view_app, name="view")
    app.command("status")(status)
