"""Parsing, validation and recording of the history format."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from causalkv.check import (
    HistoryRecorder,
    MalformedHistoryError,
    check_history,
    load_history,
    parse_history,
)


def line(process: str, type_: str, f: str, key: Any, value: Any, **extra: Any) -> str:
    entry = {"process": process, "type": type_, "f": f, "key": key, "value": value}
    entry.update({"time_s": 0.5, "node": "n1"})
    entry.update(extra)
    return json.dumps(entry)


def history_text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def malformed(*lines: str) -> MalformedHistoryError:
    with pytest.raises(MalformedHistoryError) as caught:
        parse_history(history_text(*lines))
    return caught.value


def test_operations_are_paired_across_interleaved_lines() -> None:
    history = parse_history(
        history_text(
            line("p1", "invoke", "put", "k", "v1"),
            line("p2", "invoke", "get", "k", None),
            "",
            line("p2", "ok", "get", "k", "v1"),
            line("p1", "info", "put", "k", None),
            line("p1", "invoke", "list", None, None, shard="s0"),
        )
    )
    put, get, listing = history.operations
    assert (put.status, put.invoke_line, put.completion_line, put.written) == ("info", 1, 5, "v1")
    assert (get.status, get.result, get.invoke_line, get.completion_line) == ("ok", "v1", 2, 4)
    assert (listing.status, listing.completion_line, listing.shard) == ("pending", None, "s0")


def test_unknown_fields_are_ignored() -> None:
    history = parse_history(
        history_text(
            line("p1", "invoke", "get", "k", None, trace_id="abc", attempt=2),
            line("p1", "ok", "get", "k", None, latency_ms=3.5),
        )
    )
    assert history.operations[0].status == "ok"


def test_optional_fields_are_read_from_the_completion() -> None:
    history = parse_history(
        history_text(
            line("p1", "invoke", "list", None, None),
            line("p1", "ok", "list", None, {"k": "v"}, final=True, covers=["k", "j"], shard="s"),
        )
    )
    [listing] = history.operations
    assert listing.final and listing.covers == ("k", "j") and listing.shard == "s"
    assert listing.result == {"k": "v"}


def test_invalid_json_names_the_line() -> None:
    error = malformed(line("p1", "invoke", "get", "k", None), "{not json")
    assert error.line_number == 2
    assert str(error).startswith("line 2: not valid JSON")


def test_wrong_field_type_names_the_line_and_field() -> None:
    error = malformed(line("p1", "invoke", "get", "k", None, time_s="soon"))
    assert error.line_number == 1
    assert "time_s" in str(error)


def test_missing_field_is_rejected() -> None:
    entry = json.loads(line("p1", "invoke", "get", "k", None))
    del entry["node"]
    error = malformed(json.dumps(entry))
    assert "node" in str(error)


def test_unknown_type_or_function_is_rejected() -> None:
    assert malformed(line("p1", "start", "get", "k", None)).line_number == 1
    assert malformed(line("p1", "invoke", "cas", "k", None)).line_number == 1


@pytest.mark.parametrize(
    ("lines", "bad_line", "fragment"),
    [
        ([line("p1", "invoke", "put", "k", None)], 1, "string value"),
        ([line("p1", "invoke", "put", None, "v")], 1, "needs a key"),
        ([line("p1", "invoke", "list", "k", None)], 1, "key null"),
        ([line("p1", "invoke", "delete", "k", "v")], 1, "value null"),
        ([line("p1", "invoke", "get", "k", {"a": "b"})], 1, "value null"),
        ([line("p1", "ok", "get", "k", None)], 1, "no pending invocation"),
        (
            [line("p1", "invoke", "get", "k", None), line("p1", "invoke", "get", "k", None)],
            2,
            "still in flight",
        ),
        (
            [line("p1", "invoke", "get", "k", None), line("p1", "ok", "put", "k", None)],
            2,
            "does not match",
        ),
        (
            [line("p1", "invoke", "get", "k", None), line("p1", "ok", "get", "j", None)],
            2,
            "differs",
        ),
        (
            [line("p1", "invoke", "list", None, None), line("p1", "ok", "list", None, "v")],
            2,
            "object",
        ),
        (
            [line("p1", "invoke", "get", "k", None), line("p1", "ok", "get", "k", {"k": "v"})],
            2,
            "string or null",
        ),
        ([line("p1", "invoke", "put", "k", "v", final=True)], 1, '"final"'),
        ([line("p1", "invoke", "get", "k", None, covers=["k"])], 1, '"covers"'),
        (
            [
                line("p1", "invoke", "list", None, None, shard="a"),
                line("p1", "ok", "list", None, {}, shard="b"),
            ],
            2,
            "shard",
        ),
    ],
)
def test_invalid_lines_are_rejected(lines: list[str], bad_line: int, fragment: str) -> None:
    error = malformed(*lines)
    assert error.line_number == bad_line
    assert fragment in str(error)


def test_duplicate_put_values_are_a_malformed_history() -> None:
    error = malformed(
        line("p1", "invoke", "put", "k", "v"),
        line("p1", "fail", "put", "k", None),
        line("p2", "invoke", "put", "j", "v"),  # another key: fine
        line("p2", "ok", "put", "j", None),
        line("p3", "invoke", "put", "k", "v"),
    )
    assert error.line_number == 5
    assert "unique" in str(error) and "line 1" in str(error)


def test_load_history_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(history_text(line("p1", "invoke", "get", "k", None)))
    assert load_history(path).operations[0].status == "pending"


def test_recorder_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryRecorder(path, clock=lambda: 7.0) as recorder:
        put = recorder.invoke("p1", "put", "k", "v1", "n1")
        recorder.ok(put)
        listing = recorder.invoke("p2", "list", None, None, "n2", time_s=8.0)
        recorder.ok(listing, {"k": "v1"}, covers=["k", "j"], shard="s0", final=True, node="n3")
        failed = recorder.invoke("p1", "delete", "j", None, "n1")
        recorder.fail(failed)
        unknown = recorder.invoke("p1", "put", "j", "x", "n1")
        recorder.info(unknown)
        recorder.invoke("p3", "get", "k", None, "n1")
    written = [json.loads(text) for text in path.read_text().splitlines()]
    assert len(written) == 9
    assert written[0] == {
        "process": "p1",
        "type": "invoke",
        "f": "put",
        "key": "k",
        "value": "v1",
        "time_s": 7.0,
        "node": "n1",
    }
    assert written[3]["covers"] == ["k", "j"] and written[3]["final"] is True
    assert written[3]["node"] == "n3" and written[2]["time_s"] == 8.0
    from_file = load_history(path)
    assert from_file == recorder.history()
    assert [operation.status for operation in from_file.operations] == [
        "ok",
        "ok",
        "fail",
        "info",
        "pending",
    ]
    assert check_history(from_file).ok


def test_recorder_rejects_misuse() -> None:
    recorder = HistoryRecorder()
    first = recorder.invoke("p1", "get", "k", None, "n1")
    with pytest.raises(ValueError, match="in flight"):
        recorder.invoke("p1", "get", "k", None, "n1")
    recorder.ok(first, None)
    with pytest.raises(ValueError, match="not in flight"):
        recorder.ok(first, None)
    with pytest.raises(ValueError):
        HistoryRecorder(keep_lines=False)


def test_recorder_reports_duplicate_put_values_as_malformed() -> None:
    recorder = HistoryRecorder()
    recorder.ok(recorder.invoke("p1", "put", "k", "v", "n1"))
    recorder.ok(recorder.invoke("p2", "put", "k", "v", "n1"))
    with pytest.raises(MalformedHistoryError, match="unique"):
        recorder.history()


def test_recorder_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    recorder = HistoryRecorder(path)

    def client(number: int) -> None:
        process = f"p{number}"
        for index in range(200):
            invocation = recorder.invoke(process, "put", "k", f"{process}-{index}", "n1")
            recorder.ok(invocation)
            read = recorder.invoke(process, "get", "k", None, "n1")
            recorder.ok(read, f"{process}-{index}")

    threads = [threading.Thread(target=client, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()
    history = load_history(path)
    assert len(history) == 8 * 400
    assert history == recorder.history()
    assert recorder.in_flight() == []


def test_recorder_validates_invocations_at_once() -> None:
    recorder = HistoryRecorder()
    with pytest.raises(MalformedHistoryError, match="string value"):
        recorder.invoke("p1", "put", "k", None, "n1")
    with pytest.raises(MalformedHistoryError, match="key null"):
        recorder.invoke("p1", "list", "k", None, "n1")
    assert recorder.lines() == []
