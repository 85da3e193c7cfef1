"""The client protocol, without I/O: one program per operation.

Theory of operation
===================

Each public method returns a *program* (see `causalkv.client.protocol`) that a
driver runs. A data operation goes like this:

1. Make sure a view is known (`refresh_view` if the router says it is stale).
2. Pick the next untried replica of the key's shard (`Router.candidates`) and
   send the request with the session's causal metadata.
3. On an answer (200, or 404 for data), merge the answer's causal metadata into
   the session and return. Evidence of a newer view epoch marks the view stale.
4. On a connection failure, a timeout, a 5xx or "not in the view", mark what
   went wrong (node down, view stale) and go on with the next replica. After
   every replica failed once, pause (exponential backoff, bounded) and re-read
   the view. After ``retries + 1`` attempts, raise `Unavailable`.
5. Errors no other replica can fix are raised at once: `BadRequest` (400),
   `Unauthorized` (401/403), `DependencyTimeout` (the node already waited the
   causal wait bound and fetched from the other replicas itself).

A write whose attempt may have reached a node (timeout after sending, a dropped
connection, a 5xx) is not sent again: it raises `Unavailable` with
``maybe_applied=True``. Sent again, a write the first attempt applied would be
applied twice, the second copy after writes that depended on the first (the
simulator found the server doing that when it forwarded writes). With
``resend_ambiguous_writes`` it is retried like a read, and every error raised
after that carries ``maybe_applied=True``; a delete retried after such an
attempt that answers 404 counts as done, because the earlier attempt may have
deleted the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from causalkv.client.errors import (
    AttemptFailure,
    BadRequest,
    DependencyTimeout,
    ProtocolError,
    Unauthorized,
    Unavailable,
    ViewConflict,
)
from causalkv.client.protocol import (
    HttpRequest,
    HttpResponse,
    Program,
    TransportFailure,
    gather,
    send,
    sleep,
)
from causalkv.client.results import NodeProbe, Reading, ShardListing, Sibling
from causalkv.client.routing import Router
from causalkv.client.session import Session
from causalkv.client.settings import ClientSettings
from causalkv.core.requests import DEPENDENCY_TIMEOUT_TEXT, OUTCOME_UNKNOWN_TEXT
from causalkv.core.view import View, ViewError, parse_sharded_view
from causalkv.core.wire import KEY_BYTES_MAX, VALUE_BYTES_MAX

# 503 answers that mean "this node cannot serve the view you think it serves".
VIEW_TROUBLE_TEXTS = ("no view is installed", "not in the current view", "changing views")
ERROR_TEXT_CHARS_MAX = 300

_encoder = msgspec.json.Encoder()


def check_key(key: object) -> str:
    """Validate a key as the nodes do (SPEC §6) so bad input fails before any I/O."""
    if not isinstance(key, str):
        raise BadRequest(f"keys are strings, got {type(key).__name__}")
    if not key:
        raise BadRequest("key must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise BadRequest("key is not valid UTF-8 text") from error
    if size > KEY_BYTES_MAX:
        raise BadRequest(f"key is longer than {KEY_BYTES_MAX} bytes")
    return key


def check_value(value: object) -> str:
    """Validate a value: a string of at most 8 MiB of UTF-8."""
    if not isinstance(value, str):
        raise BadRequest(f"values are strings, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise BadRequest("value is not valid UTF-8 text") from error
    if size > VALUE_BYTES_MAX:
        raise BadRequest(f"value is larger than {VALUE_BYTES_MAX} bytes")
    return value


def key_path(key: str) -> str:
    """``/data/<key>`` with the key percent-encoded, dots included (no path normalisation)."""
    return "/data/" + quote(key, safe="").replace(".", "%2E")


def decode_json_object(response: HttpResponse, address: str) -> dict[str, Any]:
    """The answer's JSON object body, or `ProtocolError`."""
    try:
        body = msgspec.json.decode(response.body) if response.body else {}
    except msgspec.DecodeError as error:
        raise ProtocolError(f"{address} answered {response.status} with invalid JSON") from error
    if not isinstance(body, dict):
        raise ProtocolError(f"{address} answered {response.status} with a non-object body")
    return body


def error_text(response: HttpResponse) -> str:
    """The ``error`` field of an error answer, or the start of its body."""
    try:
        body = msgspec.json.decode(response.body)
    except msgspec.DecodeError:
        return response.body[:ERROR_TEXT_CHARS_MAX].decode("utf-8", "replace")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:ERROR_TEXT_CHARS_MAX]
    return f"HTTP {response.status}"


@dataclass(frozen=True, slots=True)
class _Answer:
    """A definitive answer from a replica: the response, its body, who sent it."""

    response: HttpResponse
    body: dict[str, Any]
    address: str
    maybe_applied_before: bool
    """An earlier attempt of this write may have taken effect."""


class Engine:
    """All client logic shared by `Client` and `AsyncClient`; returns programs."""

    def __init__(self, router: Router, session: Session, settings: ClientSettings) -> None:
        self.router = router
        self.session = session
        self.settings = settings

    # -- data -----------------------------------------------------------------------------------

    def fetch(self, key: str, siblings: bool = False) -> Program[Reading]:
        """Read ``key``: its value (or ``None``), the answering node, and siblings if asked."""
        check_key(key)
        path = key_path(key) + ("?siblings=1" if siblings else "")
        answer = yield from self._to_owner("GET", path, {}, key=key, write=False)
        value: str | None = None
        if answer.response.status == 200:
            raw = answer.body.get("value")
            if not isinstance(raw, str):
                raise ProtocolError(f"{answer.address} answered a read without a string value")
            value = raw
        return Reading(key, value, answer.address, _parse_siblings(answer.body.get("siblings")))

    def put(self, key: str, value: str) -> Program[str]:
        """Write ``value`` to ``key``; returns the address of the replica that accepted it."""
        check_key(key)
        check_value(value)
        answer = yield from self._to_owner(
            "PUT", key_path(key), {"value": value}, key=key, write=True
        )
        if answer.response.status != 200:
            raise ProtocolError(f"{answer.address} answered a write with {answer.response.status}")
        return answer.address

    def delete(self, key: str) -> Program[bool]:
        """Delete ``key``; True if a value was deleted, False if there was none."""
        check_key(key)
        answer = yield from self._to_owner("DELETE", key_path(key), {}, key=key, write=True)
        return answer.response.status == 200 or answer.maybe_applied_before

    def list_shard(self, shard: str) -> Program[ShardListing]:
        """The items of shard ``shard`` (by name), from one of its replicas."""
        yield from self.ensure_view()
        if self.router.shard_index_by_name(shard) is None:
            raise BadRequest(f"the view has no shard named {shard!r}")
        answer = yield from self._to_owner("GET", "/data", {}, shard=shard, write=False)
        if answer.response.status != 200:
            raise ProtocolError(
                f"{answer.address} answered a listing with {answer.response.status}"
            )
        items = answer.body.get("items")
        if not isinstance(items, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in items.items()
        ):
            raise ProtocolError(f"{answer.address} answered a listing without string items")
        return ShardListing(shard, answer.address, dict(items))

    def list_all(self) -> Program[list[ShardListing]]:
        """One listing per shard of the view (in shard order); fails if any shard fails."""
        view = yield from self.ensure_view()
        names = [shard.name for shard in view.shards]
        results = yield from gather([self.list_shard(name) for name in names])
        listings: list[ShardListing] = []
        for result in results:
            if result.error is not None:
                raise result.error
            assert isinstance(result.value, ShardListing)
            listings.append(result.value)
        return listings

    # -- the view -------------------------------------------------------------------------------

    def ensure_view(self) -> Program[View]:
        """The current view, read from a node first if it is missing or may be stale."""
        view = self.router.view
        if view is not None and not self.router.needs_refresh():
            return view
        return (yield from self.refresh_view())

    def refresh_view(self, force: bool = False) -> Program[View]:
        """Ask nodes for the view until one gives it (bounded); see `Router.view_candidates`.

        Keeps the old view if none answers. Raises `Unavailable` if there is no
        view at all (no node answered, or no view is installed yet).
        """
        generation = self.router.generation
        failures: list[AttemptFailure] = []
        without_view: list[str] = []
        for address in self.router.view_candidates():
            if not force and self.router.generation != generation and self.router.view:
                return self.router.view  # a concurrent operation refreshed it meanwhile
            outcome = yield from send(
                HttpRequest("GET", address, "/view", None, self.settings.probe_timeout_s)
            )
            if isinstance(outcome, TransportFailure):
                self.router.node_failed(address)
                failures.append(AttemptFailure(address, outcome.reason))
                continue
            self.router.node_answered(address)
            if outcome.status != 200:
                failures.append(AttemptFailure(address, f"HTTP {outcome.status}"))
                continue
            try:
                body = decode_json_object(outcome, address)
                raw_view = body.get("view")
                if not raw_view:
                    without_view.append(address)
                    continue
                view = parse_sharded_view(raw_view)
            except (ProtocolError, ViewError) as error:
                failures.append(AttemptFailure(address, f"unusable view: {error}"))
                continue
            epoch = body.get("epoch")
            evidence = max(epoch if isinstance(epoch, int) else 0, self.session.epoch)
            self.router.install(view, address, evidence)
            return view
        if self.router.view is not None:
            self.router.refresh_failed()
            return self.router.view
        if without_view:
            raise Unavailable(
                "no view is installed on the cluster yet (install one with `causalkv view set`)",
                failures,
            )
        raise Unavailable("no node answered with the view", failures)

    def set_view(self, view: object, via: Sequence[str]) -> Program[dict[str, Any]]:
        """``PUT /view`` on the first of ``via`` that accepts a connection.

        Returns the answer (``{"view": ...}``) once the nodes serve the new view.
        A request that may have reached a node is not retried elsewhere: the
        change may be under way, and `Unavailable` says so (``maybe_applied``).
        """
        if isinstance(view, dict) and "view" in view and len(view) == 1:
            view = view["view"]
        try:
            parse_sharded_view(view)
        except ViewError as error:
            raise BadRequest(f"malformed view: {error}") from error
        body = _encoder.encode({"view": view})
        failures: list[AttemptFailure] = []
        for address in via:
            outcome = yield from send(
                HttpRequest(
                    "PUT", address, "/view", body, self.settings.view_change_timeout_s, admin=True
                )
            )
            if isinstance(outcome, TransportFailure):
                failures.append(AttemptFailure(address, outcome.reason))
                if outcome.maybe_sent:
                    raise Unavailable(
                        "the view change may be under way; check `causalkv status`",
                        failures,
                        maybe_applied=True,
                    )
                continue
            if outcome.status == 200:
                self.router.mark_stale()
                return decode_json_object(outcome, address)
            text = error_text(outcome)
            if outcome.status == 409:
                installed = decode_json_object(outcome, address).get("view")
                raise ViewConflict(f"{address}: {text}", installed)
            self._raise_for_client_error(outcome, address, text, maybe_applied=False)
            raise Unavailable(f"{address} did not complete the view change: {text}")
        raise Unavailable("no node accepted the view change", failures)

    # -- nodes ----------------------------------------------------------------------------------

    def probe(self, address: str) -> Program[NodeProbe]:
        """``GET /ping`` then ``GET /status`` of one node; never raises for a node that is down."""
        timeout_s = self.settings.probe_timeout_s
        ping = yield from send(HttpRequest("GET", address, "/ping", None, timeout_s))
        if isinstance(ping, TransportFailure):
            return NodeProbe(address, up=False, error=ping.reason)
        ping_ms = round(ping.elapsed_s * 1000, 3)
        if ping.status != 200:
            return NodeProbe(address, up=False, ping_ms=ping_ms, error=f"/ping: HTTP {ping.status}")
        status = yield from send(HttpRequest("GET", address, "/status", None, timeout_s))
        if isinstance(status, TransportFailure):
            return NodeProbe(address, up=True, ping_ms=ping_ms, error=f"/status: {status.reason}")
        if status.status != 200:
            return NodeProbe(address, True, ping_ms, error=f"/status: HTTP {status.status}")
        try:
            snapshot = decode_json_object(status, address)
        except ProtocolError as error:
            return NodeProbe(address, True, ping_ms, error=str(error))
        return NodeProbe(address, True, ping_ms, snapshot)

    def probe_all(self, addresses: Sequence[str]) -> Program[list[NodeProbe]]:
        """`probe` every address (concurrently under the async client)."""
        results = yield from gather([self.probe(address) for address in addresses])
        probes: list[NodeProbe] = []
        for address, result in zip(addresses, results, strict=True):
            if isinstance(result.value, NodeProbe):
                probes.append(result.value)
            else:
                probes.append(NodeProbe(address, up=False, error=repr(result.error)))
        return probes

    # -- the retry loop -------------------------------------------------------------------------

    def _to_owner(
        self,
        method: str,
        path: str,
        fields: dict[str, object],
        *,
        key: str | None = None,
        shard: str | None = None,
        write: bool,
    ) -> Program[_Answer]:
        """Send a data request to the replicas owning ``key`` (or ``shard``) until one answers."""
        settings = self.settings
        router = self.router
        failures: list[AttemptFailure] = []
        tried: set[str] = set()
        maybe_applied = False
        rounds = 0
        what = f"{method} {key!r}" if key is not None else f"the listing of shard {shard!r}"
        for _ in range(settings.retries + 1):
            yield from self.ensure_view()
            shard_index = self._shard_index(key, shard)
            candidates = router.candidates(shard_index)
            address = next((a for a in candidates if a not in tried), None)
            if address is None:
                # Every replica failed once: back off, re-read the view, start a new round.
                rounds += 1
                tried.clear()
                router.mark_stale()
                yield from sleep(
                    min(settings.backoff_s * 2 ** (rounds - 1), settings.backoff_max_s)
                )
                yield from self.ensure_view()
                shard_index = self._shard_index(key, shard)
                address = router.candidates(shard_index)[0]
            tried.add(address)
            fields["causal-metadata"] = self.session.metadata
            body = _encoder.encode(fields)
            outcome = yield from send(HttpRequest(method, address, path, body, settings.timeout_s))
            if isinstance(outcome, TransportFailure):
                router.node_failed(address)
                failures.append(AttemptFailure(address, outcome.reason))
                ambiguous = write and outcome.maybe_sent
                maybe_applied = maybe_applied or ambiguous
                if ambiguous and not settings.resend_ambiguous_writes:
                    raise _outcome_unknown(what, failures)
                continue
            router.node_answered(address)
            status = outcome.status
            if status == 200 or (status == 404 and path != "/data"):
                payload = decode_json_object(outcome, address)
                self._absorb(payload, address)
                return _Answer(outcome, payload, address, maybe_applied)
            text = error_text(outcome)
            if status == 503 and DEPENDENCY_TIMEOUT_TEXT in text:
                raise DependencyTimeout(
                    f"{what}: {address} {text} (the session depends on updates its replicas"
                    " have not received)",
                    maybe_applied=maybe_applied,
                )
            self._raise_for_client_error(outcome, address, text, maybe_applied)
            failures.append(AttemptFailure(address, f"HTTP {status}: {text}"))
            if status == 503 and write and OUTCOME_UNKNOWN_TEXT in text:
                # The node forwarded the write and the owner went silent: it may
                # have been applied. Sending it again could apply it twice.
                raise _outcome_unknown(what, failures)
            if status == 503 and any(trouble in text for trouble in VIEW_TROUBLE_TEXTS):
                router.mark_stale()
                if "changing views" not in text:
                    router.node_failed(address)
            elif status in (429, 503) and outcome.retry_after_s is not None:
                yield from sleep(min(outcome.retry_after_s, settings.backoff_max_s))
            else:
                router.node_failed(address)
                ambiguous = write and status != 503
                maybe_applied = maybe_applied or ambiguous
                if ambiguous and not settings.resend_ambiguous_writes:
                    raise _outcome_unknown(what, failures)
        raise Unavailable(f"{what} failed on every attempt", failures, maybe_applied=maybe_applied)

    def _shard_index(self, key: str | None, shard: str | None) -> int:
        if key is not None:
            return self.router.shard_index_for_key(key)
        assert shard is not None
        index = self.router.shard_index_by_name(shard)
        if index is None:
            raise BadRequest(f"the view no longer has a shard named {shard!r}")
        return index

    def _absorb(self, payload: dict[str, Any], address: str) -> None:
        metadata = payload.get("causal-metadata")
        if metadata is None:
            raise ProtocolError(f"{address} answered without causal-metadata")
        epoch = self.session.absorb_response(metadata)
        self.router.observe_epoch(epoch)

    @staticmethod
    def _raise_for_client_error(
        response: HttpResponse, address: str, text: str, maybe_applied: bool
    ) -> None:
        """Raise for answers that no other node would answer differently."""
        status = response.status
        if status in (400, 413, 414, 422):
            raise BadRequest(f"{address} refused the request: {text}", maybe_applied=maybe_applied)
        if status in (401, 403):
            raise Unauthorized(
                f"{address} wants a bearer token (client_token / cluster_secret): {text}",
                maybe_applied=maybe_applied,
            )
        if status in (404, 405):
            raise ProtocolError(f"{address} does not speak the sharded dialect: {text}")


def _parse_siblings(raw: object) -> tuple[Sibling, ...]:
    if not isinstance(raw, list):
        return ()
    siblings: list[Sibling] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        value = item.get("value")
        lamport = item.get("lamport")
        siblings.append(
            Sibling(
                value if isinstance(value, str) else None,
                str(item.get("writer", "")),
                lamport if isinstance(lamport, int) else 0,
            )
        )
    return tuple(siblings)


def _outcome_unknown(what: str, failures: list[AttemptFailure]) -> Unavailable:
    """A write that may have been applied: sending it again could apply it twice."""
    return Unavailable(f"{what}: the outcome is unknown", failures, maybe_applied=True)
