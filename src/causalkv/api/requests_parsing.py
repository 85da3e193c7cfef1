"""Validation of client input shared by both dialects (SPEC §5, §6)."""

from __future__ import annotations

import msgspec

from causalkv.core.token import Token, TokenError, decode_token
from causalkv.core.wire import KEY_BYTES_MAX, VALUE_BYTES_MAX

JSON_DEPTH_MAX = 32


class BadInput(ValueError):
    """The request is malformed; the message says how."""


class ValueTooLarge(BadInput):
    pass


def _depth(value: object, limit: int) -> int:
    stack: list[tuple[object, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_body(body: bytes) -> dict[str, object]:
    """A JSON object body; an empty body is ``{}``."""
    if not body.strip():
        return {}
    try:
        parsed = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise BadInput(f"body is not valid JSON: {error}"[:300]) from error
    except RecursionError as error:
        raise BadInput(f"body is nested deeper than {JSON_DEPTH_MAX} levels") from error
    if not isinstance(parsed, dict):
        raise BadInput("body must be a JSON object")
    if _depth(parsed, JSON_DEPTH_MAX) > JSON_DEPTH_MAX:
        raise BadInput(f"body is nested deeper than {JSON_DEPTH_MAX} levels")
    return parsed


def parse_token(body: dict[str, object], required: bool = False) -> Token:
    if "causal-metadata" not in body:
        if required:
            raise BadInput("body needs a causal-metadata field")
        return Token()
    try:
        return decode_token(body["causal-metadata"])
    except TokenError as error:
        raise BadInput(str(error)) from error


def parse_key(key: str | bytes) -> str:
    if isinstance(key, bytes):
        raise BadInput("key is not valid UTF-8")
    if not key:
        raise BadInput("key must not be empty")
    if len(key) > KEY_BYTES_MAX or len(key.encode("utf-8", "surrogatepass")) > KEY_BYTES_MAX:
        raise BadInput(f"key is longer than {KEY_BYTES_MAX} bytes")
    if any(0xD800 <= ord(character) <= 0xDFFF for character in key):
        raise BadInput("key is not valid UTF-8")
    return key


def parse_value(body: dict[str, object], field: str) -> str:
    if field not in body:
        raise BadInput(f"body needs a {field!r} field")
    value = body[field]
    if not isinstance(value, str):
        raise BadInput(f"{field!r} must be a string")
    if len(value) > VALUE_BYTES_MAX or (
        len(value) * 4 > VALUE_BYTES_MAX
        and len(value.encode("utf-8", "surrogatepass")) > VALUE_BYTES_MAX
    ):
        raise ValueTooLarge(f"{field!r} is larger than {VALUE_BYTES_MAX} bytes")
    return value
