"""Small pure pieces of the generator: RESP replies, generated values, the lag
sampler's visibility rule, configuration limits.

Why: the adapters and the lag sampler decide what counts as success and as
"visible"; a mistake there would silently skew every figure.
"""

from __future__ import annotations

import pytest

from causalkv.bench.config import BenchConfig, ConfigError
from causalkv.bench.connection import parse_resp_reply
from causalkv.bench.drivers import StoreProtocol, _resp_command
from causalkv.bench.lag import parse_value_tag, shows_write
from causalkv.bench.worker import make_value


def test_resp_replies_map_to_statuses() -> None:
    assert parse_resp_reply(b"+OK\r\n") == (200, b"OK", 5)
    assert parse_resp_reply(b"$-1\r\n") == (404, b"", 5)
    assert parse_resp_reply(b"$3\r\nabc\r\n+OK\r\n") == (200, b"abc", 9)
    assert parse_resp_reply(b"-ERR wrong\r\n") == (500, b"ERR wrong", 12)
    assert parse_resp_reply(b":7\r\n") == (200, b"7", 4)


def test_incomplete_resp_replies_wait_for_more_bytes() -> None:
    assert parse_resp_reply(b"") is None
    assert parse_resp_reply(b"$5\r\nab") is None
    assert parse_resp_reply(b"+O") is None


def test_resp_commands_are_framed_as_arrays_of_bulk_strings() -> None:
    assert _resp_command(b"SET", b"k", b"v1") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n"


def test_generated_values_are_unique_sized_and_tagged() -> None:
    value = make_value(b"c3", 17, 100, b"v" * 100)
    assert len(value) == 100
    assert value.startswith(b"c3:17:")
    assert parse_value_tag(value) == (b"c3", 17)
    # too small a size still keeps the tag (values stay unique)
    assert make_value(b"c3", 17, 2, b"v" * 2) == b"c3:17:"


def test_a_replica_shows_a_write_when_it_has_it_or_a_later_one_of_the_same_client() -> None:
    written = make_value(b"c1", 5, 20, b"v" * 20)
    assert shows_write(written, written, b"c1", 5)
    assert shows_write(make_value(b"c1", 6, 20, b"v" * 20), written, b"c1", 5)
    assert not shows_write(make_value(b"c1", 4, 20, b"v" * 20), written, b"c1", 5)
    assert not shows_write(make_value(b"c2", 9, 20, b"v" * 20), written, b"c1", 5)
    assert not shows_write(b"garbage", written, b"c1", 5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"targets": ()}, "at least one target"),
        ({"targets": ("nohost",)}, "host:port"),
        ({"clients": 0}, "clients"),
        ({"workload": "Z"}, "unknown workload"),
        ({"processes": 4, "clients": 2}, "more generator processes"),
        ({"protocol": StoreProtocol.REDIS, "targets": ("a:1", "b:2")}, "one server"),
    ],
)
def test_configuration_limits_are_checked(changes: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"targets": ("127.0.0.1:1",)}
    settings.update(changes)
    with pytest.raises(ConfigError, match=message):
        BenchConfig(**settings).validate()  # type: ignore[arg-type]
