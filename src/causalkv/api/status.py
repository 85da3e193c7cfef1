"""``GET /status``: a JSON snapshot of one node for operators, the CLI and the dashboard.

The schema is documented in ``docs/api.md``; fields are only ever added.
"""

from __future__ import annotations

import time

from causalkv import __version__
from causalkv.api.http import Receive, Scope, Send, send_json
from causalkv.core.writer import describe_writer
from causalkv.runtime.node import NodeRuntime

_started_s = time.monotonic()


def node_status(runtime: NodeRuntime) -> dict[str, object]:
    replica = runtime.replica
    view = replica.view
    now_s = time.monotonic()
    change = replica.change
    progress = replica.handoff_progress
    shard_name = None
    if view is not None and replica.shard_index is not None:
        shard_name = view.shards[replica.shard_index].name
    peers = {
        address: {
            "reachable": health.reachable,
            "consecutive_failures": health.consecutive_failures,
            "last_success_s_ago": None
            if not health.last_success_s
            else round(now_s - health.last_success_s, 3),
            "messages_sent": health.messages_sent,
            "messages_dropped": health.messages_dropped,
        }
        for address, health in sorted(runtime.transport.health.items())
    }
    counters = {name: getattr(replica.counters, name) for name in replica.counters.__slots__}
    counters["forwarded_requests"] = runtime.statistics.forwarded_requests
    counters["forward_failures"] = runtime.statistics.forward_failures
    storage = runtime.storage.stats
    return {
        "node_id": runtime.settings.node_id,
        "instance": replica.incarnation.hex(),
        "address": replica.self_address,
        "version": __version__,
        "uptime_s": round(now_s - _started_s, 3),
        "epoch": 0 if view is None else view.epoch,
        "member": replica.shard_index is not None,
        "shard": shard_name,
        "view": {} if view is None else view.to_sharded_json(),
        "keys": len(replica.store),
        "live_keys": replica.store.live_keys,
        "tombstones": len(replica.store.tombstone_keys),
        "lamport": replica.store.lamport,
        "waiting_requests": len(replica.waiters),
        "known": [
            {"writer": describe_writer(writer), "seq": seq}
            for writer, seq in sorted(replica.known.items())
        ],
        "change": None
        if change is None
        else {
            "epoch": change.proposal.epoch,
            "view": change.proposal.to_sharded_json(),
            "started_s_ago": round(now_s - change.started_s, 3),
        },
        "handoff": {
            "epoch": progress.target[0],
            "transfers_total": progress.transfers_total,
            "transfers_acked": progress.transfers_acked,
            "versions_total": progress.versions_total,
            "versions_acked": progress.versions_acked,
            "bytes_total": progress.bytes_total,
            "bytes_acked": progress.bytes_acked,
        },
        "peers": peers,
        "counters": counters,
        "storage": {
            "engine": runtime.settings.storage,
            "commits": storage.commits,
            "batches": storage.batches,
            "keys_written": storage.keys_written,
            "last_commit_s": round(storage.last_commit_seconds, 6),
            "recovery_s": round(runtime.recovery_s, 3),
        },
    }


def status_route(runtime: NodeRuntime):  # type: ignore[no-untyped-def]
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, node_status(runtime))

    return handle


def key_inspection(runtime: NodeRuntime, key: str) -> dict[str, object]:
    """What this node itself holds for ``key`` (no forwarding): for the key browser."""
    replica = runtime.replica
    view = replica.view
    shard = None
    replicas: list[str] = []
    if view is not None:
        index = view.shard_index_for_key(key)
        shard = view.shards[index].name
        replicas = list(view.replicas(index))
    entry = replica.store.entry(key)
    versions = []
    winner = None
    if entry is not None:
        from causalkv.core.keystore import Version, winner_of

        winner_version = winner_of(entry)
        winner = winner_version.value
        for version in sorted(entry, key=Version.order_key, reverse=True):
            versions.append(
                {
                    "value": version.value,
                    "tombstone": version.is_tombstone,
                    "writer": describe_writer(version.writer),
                    "seq": version.seq,
                    "lamport": version.lamport,
                    "visible": version is winner_version,
                }
            )
    return {
        "key": key,
        "node": replica.self_address,
        "shard": shard,
        "replicas": replicas,
        "held_here": entry is not None,
        "owner": replica.self_address in replicas,
        "value": winner,
        "versions": versions,
    }
