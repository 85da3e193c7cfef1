"""The causal graph: session order plus reads-from, topologically sorted.

Session order is represented by process *chains*. The chain of a process is
the sequence of its operations that completed ``ok`` and are not final reads;
those are exactly the operations whose causal metadata the client received and
carried into its later operations. Every operation (chain or not) has a
*session predecessor*: the last chain operation of its process invoked before
it. Operations outside the chains (info, pending, failed, final reads) are in
the causal past of no later operation of their process.

Reads-from edges go from a put to every ok read that returned its value (one
edge per distinct writer, however many list items it wrote).

`build_causal_graph` sorts the graph topologically with Kahn's algorithm,
scanning operations in invocation order so that the order stays close to real
time (writes that a read could see come shortly before it). If some operations
are never freed, the graph has cycles: they are found as strongly connected
components (Tarjan), one concrete cycle per component is recorded for the
report, and the reads-from edges inside each component are dropped (session
edges alone are acyclic) so that the rest of the history can still be judged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from causalkv.check.observations import ObservationIndex
from causalkv.check.operations import History


@dataclass(slots=True)
class CausalGraph:
    """Chains, edges and a topological order of a history's operations."""

    process_names: list[str]
    """Process of each column (columns number processes from 0)."""
    process_column: list[int]
    """Column of each operation's process."""
    chain_index: list[int]
    """1-based position in its process chain; 0 for operations off the chains."""
    session_predecessor: list[int]
    """Last chain operation of the same process invoked earlier, or -1."""
    sources: list[tuple[int, ...]]
    """Distinct puts each operation read from (after breaking cycles)."""
    order: list[int] = field(default_factory=list)
    """A topological order of all operations."""
    position: list[int] = field(default_factory=list)
    """Position of each operation in ``order``."""
    cycles: list[list[int]] = field(default_factory=list)
    """One cycle (operations in edge order) per strongly connected component."""
    broken_edges: set[tuple[int, int]] = field(default_factory=set)
    """Reads-from edges ``(writer, reader)`` dropped to break cycles."""

    def edge_label(self, source: int, target: int) -> str:
        """``"session"`` or ``"reads-from"``: why ``source`` precedes ``target``."""
        return "session" if self.session_predecessor[target] == source else "reads-from"


def build_causal_graph(history: History, observations: ObservationIndex) -> CausalGraph:
    """Lay out chains, add edges, sort topologically and break cycles."""
    graph = _lay_out_chains(history)
    entries = observations.observations
    for operation, positions in observations.by_operation.items():
        writers = {entries[position].writer for position in positions}
        writers.discard(-1)
        if writers:
            graph.sources[operation] = tuple(sorted(writers))
    _sort(graph)
    return graph


def _lay_out_chains(history: History) -> CausalGraph:
    count = len(history.operations)
    columns: dict[str, int] = {}
    last_chain_operation: list[int] = []
    process_column = [0] * count
    chain_index = [0] * count
    session_predecessor = [-1] * count
    for operation in history.operations:
        column = columns.get(operation.process)
        if column is None:
            column = columns[operation.process] = len(columns)
            last_chain_operation.append(-1)
        index = operation.index
        process_column[index] = column
        predecessor = last_chain_operation[column]
        session_predecessor[index] = predecessor
        if operation.status == "ok" and not operation.final:
            chain_index[index] = 1 if predecessor < 0 else chain_index[predecessor] + 1
            last_chain_operation[column] = index
    return CausalGraph(
        process_names=list(columns),
        process_column=process_column,
        chain_index=chain_index,
        session_predecessor=session_predecessor,
        sources=[()] * count,
    )


def _sort(graph: CausalGraph) -> None:
    count = len(graph.process_column)
    successors: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for operation in range(count):
        predecessor = graph.session_predecessor[operation]
        if predecessor >= 0:
            successors[predecessor].append(operation)
        for writer in graph.sources[operation]:
            successors[writer].append(operation)
        waiting[operation] = (predecessor >= 0) + len(graph.sources[operation])
    order: list[int] = []
    _kahn_scan(successors, waiting, order)
    if len(order) < count:
        stuck = [operation for operation in range(count) if waiting[operation] > 0]
        _break_cycles(graph, stuck, successors, waiting)
        _kahn_scan(successors, waiting, order)
    assert len(order) == count, "the causal graph is still cyclic"
    position = [0] * count
    for index, operation in enumerate(order):
        position[operation] = index
    graph.order = order
    graph.position = position


def _kahn_scan(successors: list[list[int]], waiting: list[int], order: list[int]) -> None:
    """Append every operation whose predecessors are all in ``order``.

    ``waiting`` counts unprocessed predecessors; -1 marks operations already in
    ``order``. Operations are started in invocation order and an operation
    freed behind the scan is emitted at once, keeping the order close to
    invocation order.
    """
    for start in range(len(waiting)):
        if waiting[start] != 0:
            continue
        waiting[start] = -1
        stack = [start]
        while stack:
            operation = stack.pop()
            order.append(operation)
            for successor in successors[operation]:
                waiting[successor] -= 1
                if waiting[successor] == 0 and successor < start:
                    waiting[successor] = -1
                    stack.append(successor)


def _break_cycles(
    graph: CausalGraph, stuck: list[int], successors: list[list[int]], waiting: list[int]
) -> None:
    members = set(stuck)
    for component in _strongly_connected_components(stuck, successors, members):
        if len(component) < 2:
            continue
        inside = set(component)
        graph.cycles.append(_find_cycle(min(component), successors, inside))
        for reader in component:
            kept = tuple(writer for writer in graph.sources[reader] if writer not in inside)
            for writer in graph.sources[reader]:
                if writer in inside:
                    graph.broken_edges.add((writer, reader))
                    successors[writer].remove(reader)
                    waiting[reader] -= 1
            graph.sources[reader] = kept
    graph.cycles.sort(key=min)


def _strongly_connected_components(
    nodes: list[int], successors: list[list[int]], members: set[int]
) -> list[list[int]]:
    """Tarjan's algorithm, iterative, on the subgraph induced by ``members``."""
    discovery: dict[int, int] = {}
    lowest: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    components: list[list[int]] = []
    for root in nodes:
        if root in discovery:
            continue
        discovery[root] = lowest[root] = len(discovery)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            node, next_child = work[-1]
            children = successors[node]
            descended = False
            while next_child < len(children):
                child = children[next_child]
                next_child += 1
                if child not in members:
                    continue
                if child not in discovery:
                    work[-1] = (node, next_child)
                    discovery[child] = lowest[child] = len(discovery)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    lowest[node] = min(lowest[node], discovery[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowest[parent] = min(lowest[parent], lowest[node])
            if lowest[node] == discovery[node]:
                component: list[int] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _find_cycle(start: int, successors: list[list[int]], inside: set[int]) -> list[int]:
    """A shortest cycle through ``start`` within one strongly connected component."""
    parent: dict[int, int] = {start: -1}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in successors[node]:
            if child == start:
                cycle = [node]
                while parent[cycle[-1]] >= 0:
                    cycle.append(parent[cycle[-1]])
                cycle.reverse()
                return cycle
            if child in inside and child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError("a strongly connected component without a cycle")
