"""The vocabulary between the sans-I/O client logic and its transports.

Theory of operation
===================

Every client operation is a *program*: a generator that yields *effects*
(`HttpRequest`, `Sleep`, `Gather`) and is sent back their *outcomes*
(`HttpResponse` or `TransportFailure`, ``None``, a list of `GatherResult`).
The programs (`causalkv.client.engine`) contain all of the protocol: routing,
failover, retries, view refreshes, session merging, error mapping. They never
touch a socket, a clock or a thread.

A driver runs a program: the blocking `Client` performs each effect with a
pooled ``httpcore.ConnectionPool`` and ``time.sleep``; the `AsyncClient` with an
``httpcore.AsyncConnectionPool`` and ``asyncio.sleep``, and runs a `Gather`'s programs
concurrently. Both drivers are a dozen lines (`Client._run` and
`AsyncClient._run`), so the two clients cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """Send one HTTP request to ``address`` (``host:port``) and wait for the answer."""

    method: str
    address: str
    path: str
    body: bytes | None
    timeout_s: float
    admin: bool = False
    """Authenticate with the cluster secret rather than the client token."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete answer: status, body and the ``Retry-After`` header if any."""

    status: int
    body: bytes
    retry_after_s: float | None = None
    elapsed_s: float = 0.0
    """Time from sending the request to reading the whole answer (measured by the driver)."""


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The request got no answer.

    ``maybe_sent`` is false only when the request certainly never reached the
    node (connection refused, connect timeout, DNS failure): then a write can be
    retried elsewhere without any doubt about whether it took effect.
    """

    reason: str
    maybe_sent: bool


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause before the next attempt."""

    seconds: float


@dataclass(frozen=True, slots=True)
class GatherResult:
    """One program's outcome in a `Gather`: its value, or the exception it raised."""

    value: object = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Gather:
    """Run several programs (concurrently where the driver can) and collect their results."""

    programs: tuple[Program[Any], ...]


Effect: TypeAlias = HttpRequest | Sleep | Gather
Outcome: TypeAlias = HttpResponse | TransportFailure | list[GatherResult] | None
Program: TypeAlias = Generator[Effect, Outcome, T]


def send(request: HttpRequest) -> Generator[Effect, Outcome, HttpResponse | TransportFailure]:
    """Sub-program: perform ``request`` and return its outcome, typed."""
    outcome = yield request
    if not isinstance(outcome, HttpResponse | TransportFailure):
        raise TypeError(f"a driver answered an HttpRequest with {type(outcome).__name__}")
    return outcome


def sleep(seconds: float) -> Generator[Effect, Outcome, None]:
    """Sub-program: pause for ``seconds``."""
    if seconds > 0:
        yield Sleep(seconds)


def gather(programs: list[Program[T]]) -> Generator[Effect, Outcome, list[GatherResult]]:
    """Sub-program: run ``programs`` and return one `GatherResult` per program, in order."""
    if not programs:
        return []
    outcome = yield Gather(tuple(programs))
    if not isinstance(outcome, list):
        raise TypeError(f"a driver answered a Gather with {type(outcome).__name__}")
    return outcome
