"""A small language for writing histories by hand in tests.

Each method records one complete operation (invocation immediately followed by
its completion) unless noted; concurrency in the causal sense comes from the
absence of session and reads-from edges, not from overlapping lines.
"""

from __future__ import annotations

import itertools

from causalkv.check import CheckResult, History, HistoryRecorder, Invocation, check_history
from causalkv.check.format import Function


class Script:
    """Builds a history with a `HistoryRecorder` and checks it."""

    def __init__(self) -> None:
        ticks = itertools.count()
        self.recorder = HistoryRecorder(clock=lambda: float(next(ticks)))

    def invoke(
        self, process: str, f: Function, key: str | None, value: str | None = None, node: str = "n1"
    ) -> Invocation:
        return self.recorder.invoke(process, f, key, value, node)

    def put(self, process: str, key: str, value: str, status: str = "ok") -> Invocation:
        invocation = self.invoke(process, "put", key, value)
        self._end(invocation, status)
        return invocation

    def delete(self, process: str, key: str, status: str = "ok") -> Invocation:
        invocation = self.invoke(process, "delete", key)
        self._end(invocation, status)
        return invocation

    def get(
        self,
        process: str,
        key: str,
        result: str | None,
        *,
        final: bool = False,
        node: str = "n1",
    ) -> Invocation:
        invocation = self.invoke(process, "get", key, node=node)
        self.recorder.ok(invocation, result, final=final)
        return invocation

    def list(
        self,
        process: str,
        items: dict[str, str],
        *,
        covers: list[str] | None = None,
        shard: str | None = None,
        final: bool = False,
        node: str = "n1",
    ) -> Invocation:
        invocation = self.invoke(process, "list", None, node=node)
        self.recorder.ok(invocation, items, covers=covers, shard=shard, final=final)
        return invocation

    def _end(self, invocation: Invocation, status: str) -> None:
        if status == "ok":
            self.recorder.ok(invocation)
        elif status == "fail":
            self.recorder.fail(invocation)
        elif status == "info":
            self.recorder.info(invocation)
        else:
            assert status == "pending", status

    def history(self) -> History:
        return self.recorder.history()

    def check(self) -> CheckResult:
        return check_history(self.history())


def kinds(result: CheckResult) -> list[str]:
    """Verdict kinds in report order, one entry per verdict."""
    return [verdict.kind.value for verdict in result.verdicts]
