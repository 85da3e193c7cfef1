"""pytest integration for the network-namespace harness (``causalkv.testing.netns``).

A test that needs the harness calls ``require_netns()`` or uses a fixture made
by one of the factories below.  When the harness cannot run here the test is
*skipped* with the precise reason -- unless ``CAUSALKV_REQUIRE_NETNS=1`` is set
(CI sets it), in which case the test *fails* with that reason, so that a CI
machine that silently lost its privileges or tools does not go green.

Usage in a test module or conftest::

    from causalkv.testing.netns_pytest import network_fixture, network_factory_fixture

    net3 = network_fixture(3)                                  # function scope
    shared_net = network_fixture(5, scope="module", names=["a", "b", "c", "d", "e"])
    make_network = network_factory_fixture()                   # make_network(2, ...)

    def test_something(net3):
        net3.partition([["h0"], ["h1", "h2"]])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

import pytest

from causalkv.testing.netns import (
    CleanupError,
    Network,
    netns_unavailable_reason,
    sweep_leftovers,
)

__all__ = [
    "REQUIRE_ENV",
    "netns_required",
    "network_factory_fixture",
    "network_fixture",
    "require_netns",
]

REQUIRE_ENV: Final = "CAUSALKV_REQUIRE_NETNS"

_Scope = Literal["session", "package", "module", "class", "function"]
_swept = False


def netns_required() -> bool:
    """True when ``CAUSALKV_REQUIRE_NETNS=1``: unavailability is a failure, not a skip."""
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


def require_netns() -> None:
    """Skip (or, with ``CAUSALKV_REQUIRE_NETNS=1``, fail) if the harness cannot run."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if netns_required():
        pytest.fail(
            f"{REQUIRE_ENV}=1 but the netns harness cannot run here: {reason}", pytrace=False
        )
    pytest.skip(f"netns harness unavailable: {reason}")


def _sweep_once() -> None:
    """Remove leftovers of crashed earlier runs, once per test process."""
    global _swept
    if not _swept:
        _swept = True
        sweep_leftovers()


def network_fixture(
    n_hosts: int = 3,
    *,
    scope: _Scope = "function",
    name: str | None = None,
    **network_kwargs: Any,
) -> Any:
    """Make a fixture yielding a started ``Network(n_hosts, **network_kwargs)``.

    Assign the result to a module-level name (that name is the fixture name,
    unless ``name`` is given).  Leftovers of crashed runs are swept first.
    """

    @pytest.fixture(scope=scope, name=name)
    def _network() -> Iterator[Network]:
        require_netns()
        _sweep_once()
        with Network(n_hosts, **network_kwargs) as network:
            yield network

    return _network


def network_factory_fixture(*, scope: _Scope = "function", name: str | None = None) -> Any:
    """Make a fixture yielding ``make(n_hosts, **kwargs) -> Network``.

    Every network made is started at once and closed when the fixture ends.
    """

    @pytest.fixture(scope=scope, name=name)
    def _factory() -> Iterator[Callable[..., Network]]:
        require_netns()
        _sweep_once()
        networks: list[Network] = []

        def make(n_hosts: int = 3, **kwargs: Any) -> Network:
            network = Network(n_hosts, **kwargs)
            networks.append(network)
            return network.start()

        yield make
        errors: list[CleanupError] = []
        for network in reversed(networks):
            try:
                network.close()
            except CleanupError as exc:
                errors.append(exc)
        if errors:
            raise CleanupError("; ".join(str(e) for e in errors))

    return _factory
