"""Convergence and lost acknowledged writes, judged on the final reads."""

from __future__ import annotations

from tests.check.script import Script, kinds


def test_final_gets_disagree() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p2", "k", "v2")
    script.get("f1", "k", "v1", final=True, node="n1")
    script.get("f2", "k", "v2", final=True, node="n2")
    result = script.check()
    assert kinds(result) == ["convergence"]
    message = result.verdicts[0].message
    assert "'v1' on n1" in message
    assert "'v2' on n2" in message


def test_final_value_against_final_absence() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p2", "k")
    script.get("f1", "k", "v1", final=True, node="n1")
    script.list("f2", {}, covers=["k"], final=True, node="n2")
    assert kinds(script.check()) == ["convergence"]


def test_final_lists_of_one_shard_must_be_identical() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p2", "k")
    script.put("p3", "j", "x")
    script.list("f1", {"k": "v1", "j": "x"}, shard="s0", final=True, node="n1")
    script.list("f2", {"j": "x"}, shard="s0", final=True, node="n2")
    script.list("f3", {"j": "x"}, shard="s1", final=True, node="n3")  # other shard
    result = script.check()
    assert kinds(result) == ["convergence"]
    assert result.verdicts[0].key == "k"


def test_lost_write_overwritten_by_an_older_version() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2")
    script.get("f1", "k", "v1", final=True, node="n1")
    script.get("f2", "k", "v1", final=True, node="n2")
    result = script.check()
    assert kinds(result) == ["lost-write"]
    [verdict] = result.verdicts
    assert "n1, n2" in verdict.message
    assert [reference.role for reference in verdict.operations] == [
        "acknowledged write",
        "final version",
        "final read",
        "final read",
    ]


def test_lost_write_replaced_by_nothing() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("f1", "k", None, final=True)
    assert kinds(script.check()) == ["lost-write"]


def test_lost_write_when_the_only_delete_precedes_it() -> None:
    script = Script()
    script.put("p1", "k", "v0")
    script.delete("p1", "k")
    script.put("p1", "k", "v1")
    script.list("f1", {}, covers=["k"], final=True)
    assert kinds(script.check()) == ["lost-write"]


def test_final_absence_explained_by_a_concurrent_delete() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p2", "k", status="info")
    script.get("f1", "k", None, final=True)
    assert script.check().ok


def test_concurrent_final_winner_supersedes_an_acknowledged_put() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p2", "k", "v2")
    script.get("f1", "k", "v2", final=True)
    assert script.check().ok


def test_unacknowledged_puts_may_be_lost() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2", status="info")
    script.put("p1", "j", "x", status="pending")
    script.get("f1", "k", "v1", final=True)
    script.list("f1", {"k": "v1"}, shard="s0", final=True)
    assert script.check().ok


def test_acknowledged_put_never_observed_and_absent_from_final_lists() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "j", "x")
    script.list("f1", {"j": "x"}, shard="s0", final=True)
    result = script.check()
    assert kinds(result) == ["lost-write"]
    assert "never read" in result.verdicts[0].message


def test_acknowledged_put_read_once_is_not_reported_as_never_observed() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p2", "k", "v1")
    script.put("p1", "j", "x")
    script.list("f1", {"j": "x"}, shard="s0", final=True)
    assert script.check().ok


def test_unobserved_put_without_final_lists_is_not_judged() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "j", "x")
    script.get("f1", "j", "x", final=True)
    assert script.check().ok
