"""Tricky histories that are causally consistent: the checker must accept them."""

from __future__ import annotations

from tests.check.script import Script, kinds


def test_concurrent_writes_read_in_different_orders() -> None:
    script = Script()
    script.put("p1", "k", "a")
    script.put("p2", "k", "b")
    script.get("p3", "k", "a")
    script.get("p3", "k", "b")
    script.get("p4", "k", "b")
    script.get("p4", "k", "a")
    assert kinds(script.check()) == []


def test_info_put_that_took_effect_and_was_read() -> None:
    script = Script()
    script.put("p1", "k", "v1", status="info")
    script.get("p2", "k", "v1")
    script.put("p2", "k", "v2")
    script.get("p2", "k", "v2")
    assert script.check().ok


def test_info_put_is_not_in_its_own_session_past() -> None:
    script = Script()
    script.put("p1", "k", "v1", status="info")
    script.put("p1", "k", "v2")
    script.get("p1", "k", "v1")  # the info write landed late, after v2: allowed
    script.get("p2", "k", "v2")
    assert script.check().ok


def test_info_put_that_never_took_effect() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2", status="info")
    script.get("p1", "k", "v1")
    script.get("p2", "k", "v1")
    assert script.check().ok


def test_pending_operations_at_the_end() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p2", "k", "v2", status="pending")
    script.get("p3", "k", "v2")
    script.delete("p4", "k", status="pending")
    script.get("p5", "k", None)
    history = script.history()
    assert [operation.status for operation in history.operations][-4:] == [
        "pending",
        "ok",
        "pending",
        "ok",
    ]
    assert script.check().ok


def test_null_read_explained_by_a_concurrent_delete() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p2", "k", "v1")
    script.delete("p3", "k")
    script.get("p2", "k", None)
    assert script.check().ok


def test_null_read_explained_by_an_info_delete() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p2", "k", "v1")
    script.delete("p3", "k", status="info")
    script.get("p2", "k", None)
    assert script.check().ok


def test_null_read_explained_by_a_delete_in_the_past() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p1", "k")
    script.put("p1", "j", "x")
    script.get("p2", "j", "x")
    script.get("p2", "k", None)
    assert script.check().ok


def test_null_read_before_anything_was_written() -> None:
    script = Script()
    script.get("p1", "k", None)
    script.put("p1", "k", "v1")
    script.get("p2", "k", None)
    assert script.check().ok


def test_delete_then_put_again() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p1", "k")
    script.put("p1", "k", "v2")
    script.get("p1", "k", "v2")
    script.get("p2", "k", "v1")
    script.get("p2", "k", None)
    script.get("p2", "k", "v2")
    assert script.check().ok


def test_failed_delete_of_a_missing_key_writes_nothing() -> None:
    script = Script()
    script.delete("p1", "k", status="fail")
    script.put("p2", "k", "v1")
    script.get("p1", "k", "v1")
    assert script.check().ok


def test_failed_operations_are_not_in_the_session_past() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "k", "v2", status="fail")
    script.get("p1", "k", "v1")
    assert script.check().ok


def test_list_without_covers_only_judges_returned_items() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p1", "j", "x")
    script.list("p1", {"j": "x"})  # k may live on another shard
    assert script.check().ok


def test_list_with_covers() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p2", "j", "x")
    script.list("p1", {"k": "v1"}, covers=["k", "j"], shard="s0")
    script.list("p2", {"j": "x"}, covers=["k", "j"], shard="s0")
    assert script.check().ok


def test_own_writes_read_back_through_a_list() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.delete("p1", "k")
    script.list("p1", {}, covers=["k"])
    script.put("p1", "k", "v2")
    script.list("p1", {"k": "v2"}, covers=["k"])
    assert script.check().ok


def test_transitive_causality_respected() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.get("p2", "k", "v1")
    script.put("p2", "k", "v2")
    script.put("p2", "j", "x")
    script.get("p3", "j", "x")
    script.get("p3", "k", "v2")
    assert script.check().ok


def test_converged_final_reads() -> None:
    script = Script()
    script.put("p1", "k", "v1")
    script.put("p2", "k", "v2")
    script.delete("p3", "j", status="fail")
    for node in ("n1", "n2", "n3"):
        script.get(f"final-{node}", "k", "v2", final=True, node=node)
        script.list(
            f"final-{node}", {"k": "v2"}, covers=["k", "j"], shard="s0", final=True, node=node
        )
    result = script.check()
    assert result.ok
    assert result.statistics.final_reads == 6
