"""The causal-consistency checker: `check_history`.

Theory of operation
===================

Input is a validated `History` (invocations paired with completions, put
values unique per key). The checker builds the causal order the clients
established, then tests every read against it, then compares the final reads.

1. Observations (`observations`). Each ok get yields one observation of its
   key; each ok list yields one per returned item plus a "not found" per
   covered key it omits. A value names its writer, the unique put of that key
   and value; a value no put wrote is a *thin-air read*, a value only a failed
   put wrote a *read of a failed write*. Neither has a writer.

2. Causal graph (`graph`). Nodes are operations. Session order: each process's
   operations that completed ok (final reads excepted) form its *chain*; every
   operation follows the chain operations invoked before it in its process. An
   info or pending operation is not on the chain: the client never got its
   causal metadata, so later operations do not depend on it; failed
   operations wrote nothing. Reads-from: each put precedes every read that
   returned its value. Final reads have incoming edges (their own past is
   judged) but are on no chain, so they add nothing to anyone's past. The
   graph is sorted topologically (Kahn, scanning in invocation order so the
   order stays close to real time); operations left over lie on or behind
   cycles, which are reported as *causal cycles* (one per strongly connected
   component) and broken by dropping the reads-from edges inside them.

3. Vector clocks (`clocks`). The past of an operation meets each chain in a
   prefix, so one integer per process summarises it; clocks are element-wise
   maxima along the topological order. ``a`` precedes ``b`` iff
   ``clock[b][process(a)] >= chain_index(a)``; an off-chain write precedes
   ``b`` iff one of its chain readers does.

4. Causal visibility (`staleness`, `classification`, `visibility`). An
   observation that returned put ``w``'s value is stale if a write ``x`` of the
   key with ``w -> x`` is in the reader's past; one that returned "not found"
   is stale if a put in its past is explained by no delete that is neither
   causally before the put nor causally after the read. Candidates come from
   the writes between ``w`` and the read in topological order (usually very
   few) or, failing that, from the latest write of each process in the past
   (binary search on the per-key chain lists). Each stale observation is named
   after the most specific session guarantee it breaks: read-your-writes,
   monotonic-reads, monotonic-writes, writes-follow-reads, else
   causal-visibility (rules in `classification`).

5. Convergence (`convergence`): final observations of a key must agree, and
   final lists of the same shard must be identical.

6. Lost writes (`lost_writes`): an acknowledged put must not be replaced in
   the final state by a version causally before it, nor by "not found" unless
   a delete not causally before it explains that; with final lists, a put no
   read ever returned whose key is absent from every final read is lost too.

Complexity, for N operations, P processes, E reads-from edges (one per
distinct writer of each read) and K observations: O(N + E) to build and sort
the graph, O((N + E) * P) time and O(N * P) memory for the clocks, then per
observation O(log N) plus the writes in its window, falling back to
O(P log N) for very stale reads and "not found" reads.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from causalkv.check.classification import Classifier
from causalkv.check.clocks import CausalOrder
from causalkv.check.convergence import final_observations, judge_convergence
from causalkv.check.cycles import judge_cycles
from causalkv.check.graph import build_causal_graph
from causalkv.check.indexes import WriteIndex
from causalkv.check.lost_writes import LostWriteJudge
from causalkv.check.observations import collect_observations
from causalkv.check.operations import History
from causalkv.check.result import CheckResult, HistoryStatistics
from causalkv.check.staleness import Staleness
from causalkv.check.visibility import judge_visibility


@contextmanager
def _cyclic_garbage_collection_paused() -> Iterator[None]:
    """Checking allocates millions of acyclic objects (clocks, observations).

    Each allocation burst would trigger full cyclic collections that find
    nothing; pausing the collector for the duration saves about a fifth of
    the time on large histories. Reference counting still frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_history(history: History) -> CheckResult:
    """Judge ``history``; see the module docstring for what is checked and how."""
    with _cyclic_garbage_collection_paused():
        return _check(history)


def _check(history: History) -> CheckResult:
    started = time.perf_counter()
    collected = collect_observations(history)
    observations = collected.observations
    graph = build_causal_graph(history, collected)
    order = CausalOrder(graph)
    writes = WriteIndex(history, graph, order)
    staleness = Staleness(history, graph, order, writes)
    classifier = Classifier(history, graph, order, writes, observations, staleness)
    finals = final_observations(history, observations)
    verdicts = [
        *collected.verdicts,
        *judge_cycles(history, graph),
        *judge_visibility(history, graph, observations, staleness, classifier),
        *judge_convergence(history, finals),
        *LostWriteJudge(history, graph, order, writes).judge(observations, finals),
    ]
    statistics = HistoryStatistics(
        operations=len(history.operations),
        processes=len(graph.process_names),
        keys=len(history.keys),
        observations=len(observations),
        final_reads=sum(
            1 for operation in history.operations if operation.final and operation.status == "ok"
        ),
        check_seconds=time.perf_counter() - started,
    )
    return CheckResult.from_verdicts(verdicts, statistics)
