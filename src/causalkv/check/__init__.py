"""Jepsen-style checker for causalkv histories.

Clients (the simulator, real-cluster tests) record every operation with a
`HistoryRecorder`; `load_history` reads such a file back and `check_history`
judges it: causal consistency (with violations named after the session
guarantee they break), convergence of the final reads, and no lost
acknowledged writes. ``causalkv check HISTORY.jsonl`` does the same from the
command line. See ``docs/checker.md``.

    history = load_history("run.jsonl")
    result = check_history(history)
    if not result.ok:
        print(result.render())
"""

from causalkv.check.checker import check_history
from causalkv.check.format import HistoryLine, MalformedHistoryError
from causalkv.check.history import HistoryRecorder, Invocation, load_history, parse_history
from causalkv.check.operations import History, Operation, build_history
from causalkv.check.result import CheckResult, HistoryStatistics
from causalkv.check.verdicts import OperationReference, Verdict, VerdictKind

__all__ = [
    "CheckResult",
    "History",
    "HistoryLine",
    "HistoryRecorder",
    "HistoryStatistics",
    "Invocation",
    "MalformedHistoryError",
    "Operation",
    "OperationReference",
    "Verdict",
    "VerdictKind",
    "build_history",
    "check_history",
    "load_history",
    "parse_history",
]
