"""Sessions: export/import round trips, merging is a join (commutative, associative,
idempotent, like the clocks it wraps), bad exports are refused with `BadRequest`, and a
session continued in another process keeps causality in both directions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from causalkv import BadRequest, Client, Session
from causalkv.core.token import Token, encode_token
from causalkv.core.writer import make_writer
from causalkv.local_cluster import LocalCluster

writers = st.builds(
    make_writer,
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(0, 3),
    st.binary(min_size=6, max_size=6),
)
tokens = st.builds(
    Token, st.dictionaries(writers, st.integers(1, 2**40), max_size=6), st.integers(0, 9)
)


def session_of(token: Token) -> Session:
    return Session(encode_token(token))


@given(tokens)
def test_export_round_trips(token: Token) -> None:
    session = session_of(token)
    text = session.export()
    assert text.startswith("ckv1:")
    assert Session.from_export(text).metadata == session.metadata
    assert Session.from_export(json.dumps(session.metadata)).metadata == session.metadata
    assert Session.from_export(text).epoch == session.epoch


@given(tokens, tokens, tokens)
def test_merge_is_a_join(a: Token, b: Token, c: Token) -> None:
    x, y, z = session_of(a), session_of(b), session_of(c)
    assert (x | y).metadata == (y | x).metadata
    assert ((x | y) | z).metadata == (x | (y | z)).metadata
    assert (x | x).metadata == x.metadata
    assert (x | Session()).metadata == x.metadata
    merged = x.copy().merge(y.export())
    assert merged.metadata == (x | y).metadata
    assert merged.epoch == max(x.epoch, y.epoch)


def test_fresh_session() -> None:
    session = Session()
    assert session.is_empty()
    assert session.metadata == {}
    assert session.export() == "ckv1:"
    assert Session.from_export("ckv1:").is_empty()
    assert Session.from_export("").is_empty()


@pytest.mark.parametrize(
    "text", ["garbage", "ckv1:!!!", "ckv1:AAAA", '{"c": 5}', '["c"]', '{"x": "y"}']
)
def test_bad_exports_are_refused(text: str) -> None:
    with pytest.raises(BadRequest):
        Session.from_export(text)


def test_merge_into_self_in_place() -> None:
    token = Token({make_writer(1, 2, 0, b"abcdef"): 3}, 1)
    session = Session()
    result = session.merge(encode_token(token))
    assert result is session
    assert session.metadata == encode_token(token)


CONTINUE_SESSION = textwrap.dedent(
    """
    import sys
    from causalkv import Client

    nodes, exported, key = sys.argv[1], sys.argv[2], sys.argv[3]
    with Client(nodes, session=exported) as kv:
        # Causal: the parent's write is visible at once, on whatever replica serves it.
        print(kv[key], flush=True)
        kv[key + "-reply"] = "written by the child after reading " + kv[key]
        print(kv.session.export(), flush=True)
    """
)


def test_a_subprocess_continues_the_session(cluster: LocalCluster) -> None:
    key = f"handover-{uuid.uuid4().hex[:8]}"
    nodes = ",".join(node.address for node in cluster.nodes)
    with Client(cluster.nodes[0].address) as kv:
        kv[key] = "from the parent"
        child = subprocess.run(
            [sys.executable, "-c", CONTINUE_SESSION, nodes, kv.session.export(), key],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        seen, exported = child.stdout.strip().splitlines()
        assert seen == "from the parent"
        # The child's session has seen everything the parent's had, and its own write.
        child_session = Session.from_export(exported)
        assert (child_session | kv.session).metadata == child_session.metadata
        kv.session.merge(exported)
        assert kv[key + "-reply"] == "written by the child after reading from the parent"
