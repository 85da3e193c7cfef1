"""The sharded dialect (SPEC §3): ``/view`` and ``/data``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from causalkv.api.http import Send, send_json
from causalkv.api.requests_parsing import BadInput, parse_body, parse_key, parse_token, parse_value
from causalkv.core.requests import (
    DEPENDENCY_TIMEOUT_TEXT,
    OUTCOME_UNKNOWN_TEXT,
    Operation,
    OperationResult,
    ResultKind,
)
from causalkv.core.token import encode_token
from causalkv.core.view import View, ViewError, parse_sharded_view
from causalkv.runtime.node import NodeRuntime


def _siblings(result: OperationResult) -> list[dict[str, object]]:
    return [{"value": s.value, "writer": s.writer, "lamport": s.lamport} for s in result.siblings]


def reason_header(result: OperationResult) -> tuple[bytes, bytes]:
    """Machine-readable reason for a failure; the JSON bodies stay as the SPEC words them."""
    return (b"x-causalkv-reason", result.kind.value.encode())


async def render_failure(send: Send, result: OperationResult) -> None:
    kind = result.kind
    reason = reason_header(result)
    if kind is ResultKind.NO_VIEW:
        await send_json(send, 503, {"error": "no view is installed on this node"}, [reason])
    elif kind is ResultKind.NOT_MEMBER:
        await send_json(send, 503, {"error": "this node is not in the current view"}, [reason])
    elif kind is ResultKind.DEPENDENCY_TIMEOUT:
        await send_json(send, 503, {"error": DEPENDENCY_TIMEOUT_TEXT}, [reason])
    elif kind is ResultKind.OVERLOADED:
        retry = (b"retry-after", b"1")
        await send_json(send, 503, {"error": "too many waiting requests"}, [retry, reason])
    elif kind is ResultKind.BAD_REQUEST:
        await send_json(send, 400, {"error": result.detail or "bad request"}, [reason])
    elif kind is ResultKind.OUTCOME_UNKNOWN:
        await send_json(send, 503, {"error": OUTCOME_UNKNOWN_TEXT}, [reason])
    else:
        message = f"the cluster is changing views ({kind.value}); retry"
        await send_json(send, 503, {"error": message}, [reason])


async def data(
    runtime: NodeRuntime, send: Send, method: str, raw_key: str | bytes, body: bytes, siblings: bool
) -> None:
    try:
        key = parse_key(raw_key)
        parsed = parse_body(body)
        token = parse_token(parsed)
        value = parse_value(parsed, "value") if method == "PUT" else None
    except BadInput as error:
        await send_json(send, 400, {"error": str(error)})
        return
    operation = {"GET": Operation.GET, "PUT": Operation.PUT, "DELETE": Operation.DELETE}[method]
    result = await runtime.execute(operation, key, token, value, with_siblings=siblings)
    metadata = encode_token(result.token if result.token is not None else token)
    if result.kind is ResultKind.OK:
        payload: dict[str, object] = {"causal-metadata": metadata}
        if operation is Operation.GET:
            payload = {"value": result.value, "causal-metadata": metadata}
        if siblings and result.siblings:
            payload["siblings"] = _siblings(result)
        await send_json(send, 200, payload)
    elif result.kind is ResultKind.NOT_FOUND:
        payload = {"causal-metadata": metadata}
        if siblings and result.siblings:
            payload["siblings"] = _siblings(result)
        await send_json(send, 404, payload)
    else:
        await render_failure(send, result)


async def listing(runtime: NodeRuntime, send: Send, body: bytes) -> None:
    try:
        token = parse_token(parse_body(body))
    except BadInput as error:
        await send_json(send, 400, {"error": str(error)})
        return
    result = await runtime.execute(Operation.LIST, None, token)
    if result.kind is ResultKind.OK:
        metadata = encode_token(result.token if result.token is not None else token)
        await send_json(send, 200, {"items": result.items or {}, "causal-metadata": metadata})
    else:
        await render_failure(send, result)


async def get_view(runtime: NodeRuntime, send: Send) -> None:
    view = runtime.replica.view
    body: dict[str, object] = {"view": {} if view is None else view.to_sharded_json()}
    if view is not None:
        body["epoch"] = view.epoch
    await send_json(send, 200, body)


async def put_view(
    runtime: NodeRuntime, send: Send, body: bytes, resolve: Callable[[View], Awaitable[str | None]]
) -> None:
    try:
        parsed = parse_body(body)
        if "view" not in parsed:
            raise BadInput("body needs a 'view' field")
        view = parse_sharded_view(parsed["view"])
    except (BadInput, ViewError) as error:
        await send_json(send, 400, {"error": str(error)})
        return
    result = await runtime.propose_view(view, await resolve(view))
    installed = runtime.replica.view
    rendered = {} if installed is None else installed.to_sharded_json()
    if result.kind is ResultKind.OK:
        await send_json(send, 200, {"view": rendered})
    elif result.kind is ResultKind.VIEW_CONFLICT:
        await send_json(send, 409, {"error": result.detail, "view": rendered})
    else:
        await send_json(send, 503, {"error": result.detail or "the view change did not complete"})
