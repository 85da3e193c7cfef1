"""A client session: the causal metadata a sequence of operations carries.

A `Session` holds the causal token of everything its operations have seen. The
client sends it with every request and merges every response into it, which is
all it takes for read-your-writes, monotonic reads, monotonic writes and
writes-follow-reads, across keys and shards.

Sessions travel: ``session.export()`` is a short string that another process
(or another user) turns back into a session with ``Session.from_export`` or
``Client(nodes, session=text)``; merging two sessions (``a | b``) gives one
that has seen everything either has seen.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import msgspec

from causalkv.client.errors import BadRequest, ProtocolError
from causalkv.core.token import Token, TokenError, decode_token, encode_token
from causalkv.core.writer import writer_epoch

EXPORT_PREFIX = "ckv1:"
"""Prefix of exported sessions; the version lets the format change later."""

EXPORT_CHARS_MAX = 512 * 1024


def token_epoch(token: Token) -> int:
    """The highest view epoch a token has evidence of (its floor or a writer's epoch)."""
    epoch = token.epoch_floor
    for writer in token.clock:
        writer_epoch_value = writer_epoch(writer)
        if writer_epoch_value > epoch:
            epoch = writer_epoch_value
    return epoch


class Session:
    """Causal metadata carried and merged across operations; thread-safe.

    Create an empty session with ``Session()``, restore one with
    ``Session.from_export(text)`` or ``Session.from_metadata(obj)``. Share a
    session between clients by passing the same object to each.
    """

    __slots__ = ("_encoded", "_epoch", "_lock", "_token")

    def __init__(self, metadata: Mapping[str, object] | None = None) -> None:
        """A session that has seen what ``metadata`` (a ``causal-metadata`` object) says."""
        self._lock = threading.Lock()
        self._token = _decode_user_metadata(metadata)
        self._encoded: dict[str, str] = encode_token(self._token)
        self._epoch = token_epoch(self._token)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object] | None) -> Session:
        """A session from a raw ``causal-metadata`` object (as the HTTP API returns)."""
        return cls(metadata)

    @classmethod
    def from_export(cls, text: str) -> Session:
        """Restore a session from `export` output (or from the JSON text of raw metadata).

        Raises `BadRequest` if ``text`` is not an exported session.
        """
        if not isinstance(text, str):
            raise BadRequest("an exported session is a string")
        text = text.strip()
        if len(text) > EXPORT_CHARS_MAX:
            raise BadRequest("the exported session is too large")
        if text.startswith(EXPORT_PREFIX):
            encoded = text[len(EXPORT_PREFIX) :]
            return cls({"c": encoded} if encoded else None)
        if text.startswith("{"):
            try:
                metadata = msgspec.json.decode(text)
            except msgspec.DecodeError as error:
                raise BadRequest(f"not an exported session: {error}") from error
            if isinstance(metadata, dict) and "causal-metadata" in metadata:
                metadata = metadata["causal-metadata"]
            if not isinstance(metadata, dict):
                raise BadRequest("not an exported session: causal metadata must be an object")
            return cls(metadata)
        if not text:
            return cls()
        raise BadRequest(f"not an exported session (it should start with {EXPORT_PREFIX!r})")

    @classmethod
    def coerce(cls, session: Session | str | Mapping[str, object] | None) -> Session:
        """``session`` itself if it is a `Session`, else a new one built from it."""
        if session is None:
            return cls()
        if isinstance(session, Session):
            return session
        if isinstance(session, str):
            return cls.from_export(session)
        return cls(session)

    # -- reading --------------------------------------------------------------------------------

    def export(self) -> str:
        """A compact, printable string holding this session; see `from_export`."""
        with self._lock:
            return EXPORT_PREFIX + self._encoded.get("c", "")

    @property
    def metadata(self) -> dict[str, str]:
        """The ``causal-metadata`` object to send with the next request (a copy)."""
        with self._lock:
            return dict(self._encoded)

    @property
    def epoch(self) -> int:
        """The highest view epoch this session has evidence of."""
        return self._epoch

    def token(self) -> Token:
        """A copy of the decoded token."""
        with self._lock:
            return self._token.copy()

    def is_empty(self) -> bool:
        """True for a session that has seen nothing yet."""
        with self._lock:
            return self._token.is_empty()

    def copy(self) -> Session:
        """An independent session that has seen the same as this one."""
        return Session(self.metadata)

    # -- merging --------------------------------------------------------------------------------

    def merge(self, other: Session | str | Mapping[str, object]) -> Session:
        """Merge ``other`` (a session, an export string or raw metadata) into this one.

        Returns ``self``, so that calls chain. Raises `BadRequest` for an invalid
        export string or metadata.
        """
        if isinstance(other, Session):
            token = other.token()
        elif isinstance(other, str):
            token = Session.from_export(other).token()
        else:
            token = _decode_user_metadata(other)
        self._merge_token(token)
        return self

    def absorb_response(self, metadata: object) -> int:
        """Merge the ``causal-metadata`` a node sent; returns the response's epoch evidence.

        Raises `ProtocolError` if the node sent something that is not a token.
        """
        if metadata == self._encoded:
            return self._epoch
        try:
            token = decode_token(metadata)
        except TokenError as error:
            raise ProtocolError(f"a node sent invalid causal metadata: {error}") from error
        self._merge_token(token)
        return token_epoch(token)

    def _merge_token(self, token: Token) -> None:
        if token.is_empty():
            return
        with self._lock:
            merged = self._token.merged(token)
            if merged.clock == self._token.clock and merged.epoch_floor == self._token.epoch_floor:
                return
            self._token = merged
            self._encoded = encode_token(merged)
            self._epoch = max(self._epoch, token_epoch(token))

    def __or__(self, other: Session) -> Session:
        """A new session that has seen everything either session has seen."""
        if not isinstance(other, Session):
            return NotImplemented
        return self.copy().merge(other)

    def __ior__(self, other: Session) -> Session:
        if not isinstance(other, Session):
            return NotImplemented
        return self.merge(other)

    def __repr__(self) -> str:
        with self._lock:
            writers = len(self._token.clock)
        return f"Session(writers={writers}, epoch={self._epoch})"


SessionInput = Session | str | Mapping[str, object] | None
"""What ``Client(..., session=...)`` accepts: a session, an export string, raw metadata."""


def _decode_user_metadata(metadata: object) -> Token:
    if metadata is None:
        return Token()
    if isinstance(metadata, Mapping) and not isinstance(metadata, dict):
        metadata = dict(metadata)
    try:
        return decode_token(metadata)
    except TokenError as error:
        raise BadRequest(f"invalid session metadata: {error}") from error
