"""The SyncKV dialect (SPEC §4): ``/kvs/admin/view`` and ``/kvs/data``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from causalkv.api.http import Send, send_json
from causalkv.api.requests_parsing import (
    BadInput,
    ValueTooLarge,
    parse_body,
    parse_key,
    parse_token,
    parse_value,
)
from causalkv.api.sharded import reason_header
from causalkv.core.requests import (
    DEPENDENCY_TIMEOUT_TEXT,
    OUTCOME_UNKNOWN_TEXT,
    Operation,
    OperationResult,
    ResultKind,
)
from causalkv.core.token import encode_token
from causalkv.core.view import View, ViewError, parse_flat_view
from causalkv.runtime.node import NodeRuntime

BAD_REQUEST = {"error": "bad request"}
UNINITIALIZED = {"error": "uninitialized"}


def _initialized(runtime: NodeRuntime) -> bool:
    replica = runtime.replica
    if replica.view is not None and replica.shard_index is not None:
        return True
    pending = replica.change
    return (
        pending is not None
        and replica.self_address is not None
        and pending.proposal.contains(replica.self_address)
    )


async def _render_failure(send: Send, result: OperationResult) -> None:
    kind = result.kind
    reason = reason_header(result)
    if kind in (ResultKind.NO_VIEW, ResultKind.NOT_MEMBER):
        await send_json(send, 418, UNINITIALIZED, [reason])
    elif kind is ResultKind.DEPENDENCY_TIMEOUT:
        await send_json(send, 500, {"error": DEPENDENCY_TIMEOUT_TEXT}, [reason])
    elif kind is ResultKind.OVERLOADED:
        await send_json(send, 503, {"error": "too many waiting requests"}, [(b"retry-after", b"1")])
    elif kind is ResultKind.BAD_REQUEST:
        await send_json(send, 400, BAD_REQUEST)
    elif kind is ResultKind.OUTCOME_UNKNOWN:
        await send_json(send, 503, {"error": OUTCOME_UNKNOWN_TEXT}, [reason])
    else:
        await send_json(
            send, 503, {"error": f"the cluster is changing views ({kind.value}); retry"}
        )


async def data(
    runtime: NodeRuntime, send: Send, method: str, raw_key: str | bytes, body: bytes, siblings: bool
) -> None:
    if not _initialized(runtime):
        await send_json(send, 418, UNINITIALIZED)
        return
    try:
        key = parse_key(raw_key)
        parsed = parse_body(body)
        token = parse_token(parsed, required=method == "PUT")
        value = parse_value(parsed, "val") if method == "PUT" else None
    except ValueTooLarge:
        await send_json(send, 400, {"error": "val too large"})
        return
    except BadInput:
        await send_json(send, 400, BAD_REQUEST)
        return
    operation = {"GET": Operation.GET, "PUT": Operation.PUT, "DELETE": Operation.DELETE}[method]
    result = await runtime.execute(operation, key, token, value, with_siblings=siblings)
    metadata = encode_token(result.token if result.token is not None else token)
    extra: dict[str, object] = {}
    if siblings and result.siblings:
        extra["siblings"] = [
            {"val": s.value, "writer": s.writer, "lamport": s.lamport} for s in result.siblings
        ]
    if result.kind is ResultKind.OK:
        if operation is Operation.PUT:
            await send_json(send, 201 if result.created else 200, {"causal-metadata": metadata})
        elif operation is Operation.GET:
            await send_json(send, 200, {"val": result.value, "causal-metadata": metadata, **extra})
        else:
            await send_json(send, 200, {"causal-metadata": metadata})
    elif result.kind is ResultKind.NOT_FOUND:
        await send_json(send, 404, {"causal-metadata": metadata, **extra})
    else:
        await _render_failure(send, result)


async def listing(runtime: NodeRuntime, send: Send, body: bytes) -> None:
    if not _initialized(runtime):
        await send_json(send, 418, UNINITIALIZED)
        return
    try:
        token = parse_token(parse_body(body))
    except BadInput:
        await send_json(send, 400, BAD_REQUEST)
        return
    result = await runtime.execute(Operation.LIST, None, token)
    if result.kind is ResultKind.OK:
        keys = sorted(result.items or {})
        metadata = encode_token(result.token if result.token is not None else token)
        await send_json(send, 200, {"count": len(keys), "keys": keys, "causal-metadata": metadata})
    else:
        await _render_failure(send, result)


async def get_view(runtime: NodeRuntime, send: Send) -> None:
    replica = runtime.replica
    view = replica.view
    if view is None or replica.shard_index is None:
        await send_json(send, 200, {"view": []})
    else:
        await send_json(send, 200, {"view": view.to_flat_json()})


async def put_view(
    runtime: NodeRuntime, send: Send, body: bytes, resolve: Callable[[View], Awaitable[str | None]]
) -> None:
    try:
        parsed = parse_body(body)
        if "view" not in parsed:
            raise BadInput("body needs a 'view' field")
        view = parse_flat_view(parsed["view"])
    except (BadInput, ViewError):
        await send_json(send, 400, BAD_REQUEST)
        return
    result = await runtime.propose_view(view, await resolve(view))
    installed = runtime.replica.view
    if result.kind is ResultKind.OK:
        await send_json(send, 200, {"view": [] if installed is None else installed.to_flat_json()})
    elif result.kind is ResultKind.VIEW_CONFLICT:
        await send_json(send, 409, {"error": result.detail})
    else:
        await send_json(send, 503, {"error": result.detail or "the view change did not complete"})


async def delete_view(runtime: NodeRuntime, send: Send) -> None:
    await runtime.reset()
    await send_json(send, 200, {"view": []})
