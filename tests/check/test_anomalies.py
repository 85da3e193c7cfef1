"""Hand-written histories with one anomaly each: the checker must name it."""

from __future__ import annotations

from causalkv.check import VerdictKind
from tests.check.script import Script, kinds


def test_thin_air_read() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p2", "k", "ghost")
    result = script.check()
    assert kinds(result) == ["thin-air-read"]
    assert not result.ok
    [verdict] = result.verdicts
    assert verdict.key == "k"
    assert verdict.operations[0].value == "ghost"
    assert verdict.operations[0].invoke_line == 3


def test_read_of_a_failed_write_is_reported_distinctly() -> None:
    script = Script()
    script.put("p1", "k", "v1", status="fail")
    script.get("p2", "k", "v1")
    assert kinds(script.check()) == ["read-of-failed-write"]


def test_read_your_writes() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2")
    script.get("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["read-your-writes"]
    roles = {reference.role: reference.value for reference in result.verdicts[0].operations}
    assert roles == {"read": "v1", "version read": "v1", "overwriting write": "v2"}


def test_read_your_writes_over_another_process_version() -> None:
    script = Script()
    script.put("p2", "k", "v0")
    script.get("p1", "k", "v0")
    script.put("p1", "k", "v1")
    script.get("p1", "k", "v0")
    assert kinds(script.check()) == ["read-your-writes"]


def test_read_your_writes_not_found() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p1", "k", None)
    assert kinds(script.check()) == ["read-your-writes"]


def test_read_your_writes_not_found_despite_an_earlier_delete() -> None:
    script = Script()
    script.put("p2", "k", "v0")
    script.delete("p2", "k")
    script.put("p2", "j", "x")
    script.get("p1", "j", "x")  # the delete is now in p1's past ...
    script.put("p1", "k", "v1")  # ... so it precedes v1 and cannot explain a later null
    script.get("p1", "k", None)
    assert kinds(script.check()) == ["read-your-writes"]


def test_monotonic_reads() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.put("p2", "k", "v2")
    script.get("p1", "k", "v2")
    script.get("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["monotonic-reads"]
    roles = [reference.role for reference in result.verdicts[0].operations]
    assert "earlier read" in roles


def test_monotonic_reads_across_writers() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.get("p3", "k", "v1")
    script.put("p3", "k", "v2")
    script.get("p1", "k", "v2")
    script.get("p1", "k", "v1")
    assert kinds(script.check()) == ["monotonic-reads"]


def test_monotonic_reads_not_found() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.get("p1", "k", "v1")
    script.get("p1", "k", None)
    assert kinds(script.check()) == ["monotonic-reads"]


def test_monotonic_writes() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.put("p2", "k", "v2")
    script.put("p2", "j", "x")
    script.get("p1", "j", "x")
    script.get("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["monotonic-writes"]
    assert result.verdicts[0].key == "k"


def test_monotonic_writes_not_found_after_delete_and_put() -> None:
    script = Script()
    script.put("p2", "k", "v0")
    script.delete("p2", "k")
    script.put("p2", "k", "v1")
    script.put("p2", "j", "x")
    script.get("p1", "j", "x")
    script.get("p1", "k", None)
    result = script.check()
    assert kinds(result) == ["monotonic-writes"]
    roles = [reference.role for reference in result.verdicts[0].operations]
    assert roles == ["read", "unexplained put", "earlier delete"]


def test_writes_follow_reads() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.get("p3", "k", "v1")
    script.put("p3", "k", "v2")
    script.put("p3", "j", "x")
    script.get("p1", "j", "x")
    script.get("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["writes-follow-reads"]
    roles = [reference.role for reference in result.verdicts[0].operations]
    assert "writer's earlier read" in roles


def test_causal_visibility_across_keys() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.get("p3", "k", "v1")
    script.put("p3", "a", "x")
    script.get("p4", "a", "x")
    script.put("p4", "k", "v2")  # follows v1 only through key a
    script.put("p4", "j", "y")
    script.get("p1", "j", "y")
    script.get("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["causal-visibility"]
    path = [
        reference.invoke_line
        for reference in result.verdicts[0].operations
        if reference.role == "causal path"
    ]
    assert path  # the report shows how the newer write reached the reader


def test_causal_visibility_not_found() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.put("p2", "j", "x")
    script.get("p1", "j", "x")
    script.get("p1", "k", None)
    assert kinds(script.check()) == ["causal-visibility"]


def test_delete_hides_an_older_version() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.delete("p2", "k")
    script.put("p2", "j", "x")
    script.get("p1", "j", "x")
    script.get("p1", "k", "v1")  # the delete is in the past and overwrote v1
    assert kinds(script.check()) == ["monotonic-writes"]


def test_overwrite_by_info_write_that_was_read() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2", status="info")
    script.get("p2", "k", "v2")
    script.get("p2", "k", "v1")
    assert kinds(script.check()) == ["monotonic-reads"]


def test_read_from_a_later_write_of_the_same_session_is_a_cycle() -> None:
    script = Script()
    script.get("p1", "k", "v1")
    script.put("p1", "k", "v1")
    result = script.check()
    assert kinds(result) == ["causal-cycle"]
    assert "its own process" in result.verdicts[0].message
    assert {reference.invoke_line for reference in result.verdicts[0].operations} == {1, 3}


def test_cycle_across_two_processes() -> None:
    script = Script()
    script.get("p1", "a", "y")
    script.put("p1", "b", "x")
    script.get("p2", "b", "x")
    script.put("p2", "a", "y")
    script.get("p3", "a", "y")  # downstream of the cycle, still judged
    result = script.check()
    assert kinds(result) == ["causal-cycle"]
    assert len(result.verdicts[0].operations) == 4


def test_cycle_through_an_info_write() -> None:
    script = Script()
    script.get("p1", "k", "v1")
    script.put("p1", "k", "v1", status="info")
    assert kinds(script.check()) == ["causal-cycle"]


def test_stale_list_item() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2")
    script.list("p1", {"k": "v1"})
    assert kinds(script.check()) == ["read-your-writes"]


def test_list_with_covers_judges_absent_keys() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.list("p1", {}, covers=["k", "other"])
    result = script.check()
    assert kinds(result) == ["read-your-writes"]
    assert result.verdicts[0].key == "k"


def test_list_is_judged_as_a_causal_snapshot() -> None:
    script = Script()
    script.put("p2", "k", "v1")
    script.put("p2", "k", "v2")
    script.put("p2", "j", "x")
    script.list("p1", {"j": "x", "k": "v1"})
    assert kinds(script.check()) == ["monotonic-writes"]


def test_every_stale_observation_is_reported() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2")
    script.get("p1", "k", "v1")
    script.get("p1", "k", "v1")
    script.list("p1", {"k": "v1"})
    assert kinds(script.check()) == ["read-your-writes"] * 3


def test_final_reads_are_judged_for_visibility() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2")
    script.get("p1", "k", "v1", final=True)
    result = script.check()
    assert VerdictKind.READ_YOUR_WRITES in result.kinds
    assert VerdictKind.LOST_WRITE in result.kinds
