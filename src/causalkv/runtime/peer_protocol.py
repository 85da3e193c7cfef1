"""The node-to-node wire format, carried by ``POST /kvs/internal/sync``.

The body is MessagePack: either an envelope of protocol messages (one-way; the
answer is an empty 204) or a forwarded client operation (answered with its
dialect-neutral result). msgspec decodes and type-checks every field against
these definitions before anything reaches the core.
"""

from __future__ import annotations

import msgspec

from causalkv.core.messages import Envelope
from causalkv.core.requests import Operation, OperationResult, ResultKind, Sibling
from causalkv.core.token import Token, decode_token_bytes, encode_token_bytes

PEER_PATH = "/kvs/internal/sync"
PEER_CONTENT_TYPE = "application/vnd.causalkv.peer+msgpack"


class EnvelopeCall(msgspec.Struct, tag="envelope", frozen=True):
    envelope: Envelope


class ForwardCall(msgspec.Struct, tag="forward", frozen=True):
    operation: str
    key: str | None
    value: str | None
    token: bytes
    with_siblings: bool = False
    origin_epoch: int = 0


class WireSibling(msgspec.Struct, array_like=True, frozen=True):
    value: str | None
    writer: str
    lamport: int


class ForwardReply(msgspec.Struct, frozen=True):
    kind: str
    token: bytes | None = None
    value: str | None = None
    items: dict[str, str] | None = None
    created: bool = False
    forward_to: list[str] = []
    siblings: list[WireSibling] = []
    detail: str = ""


PeerCall = EnvelopeCall | ForwardCall

call_decoder = msgspec.msgpack.Decoder(PeerCall)
reply_decoder = msgspec.msgpack.Decoder(ForwardReply)
encoder = msgspec.msgpack.Encoder()

OPERATIONS = {operation.value: operation for operation in Operation}
RESULT_KINDS = {kind.value: kind for kind in ResultKind}


def reply_from_result(result: OperationResult) -> ForwardReply:
    return ForwardReply(
        kind=result.kind.value,
        token=None if result.token is None else encode_token_bytes(result.token),
        value=result.value,
        items=result.items,
        created=result.created,
        forward_to=list(result.forward_to),
        siblings=[WireSibling(s.value, s.writer, s.lamport) for s in result.siblings],
        detail=result.detail,
    )


def result_from_reply(reply: ForwardReply) -> OperationResult:
    """Rebuild a result; raises ValueError (or TokenError) on anything malformed."""
    kind = RESULT_KINDS.get(reply.kind)
    if kind is None:
        raise ValueError(f"unknown result kind {reply.kind!r}")
    token: Token | None = None if reply.token is None else decode_token_bytes(reply.token)
    return OperationResult(
        kind,
        token=token,
        value=reply.value,
        items=reply.items,
        created=reply.created,
        forward_to=tuple(reply.forward_to),
        siblings=[Sibling(s.value, s.writer, s.lamport) for s in reply.siblings],
        detail=reply.detail,
    )
