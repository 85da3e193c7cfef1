"""The discrete-event loop of the simulator: virtual time, futures, tasks, processes.

Theory of operation
-------------------
The simulator runs a whole causalkv cluster (the real ``causalkv.core.Replica``
objects) inside one Python process, one event at a time, on *virtual* time.
Nothing in a run reads the wall clock or draws randomness from anywhere but
the run's own ``random.Random`` streams (all derived from the one seed), so a
seed replays event for event: same seed + same code = same run.

* **Events.** ``EventLoop`` keeps a heap of ``(time, sequence, Timer)``. The
  sequence number breaks ties in scheduling order, so two events due at the
  same instant always run in the same order. Running an event may schedule
  more; virtual time jumps straight to the next due event (idle time is free).

* **Futures and tasks.** The node runtime (``node.py``) mirrors the asyncio
  runtime (``causalkv.runtime.node``) line by line, so it is written with
  ``async``/``await`` too. Its coroutines run on this loop rather than on
  asyncio: ``SimFuture`` is an awaitable resolved by an event (a timer, a
  message arrival, a disk write becoming durable), and ``Task`` steps a
  coroutine each time the future it waits on resolves. Wake-ups are scheduled
  as events at the current instant (like ``asyncio``'s ``call_soon``), never
  run re-entrantly, which keeps the order of everything deterministic.

* **Processes.** A ``Process`` owns tasks: a node's runtime is one process per
  incarnation of the node, each client and the fault injector (the
  *nemesis*) are processes too. Killing a process (a node crash) closes every
  coroutine it owns at once: whatever they were waiting for is simply never
  resumed, exactly like a process that died. Timers check the generation of
  the process that armed them before acting.

* **Halting.** Any component may ``halt`` the loop with a reason (a core
  exception, a violated invariant); the loop stops after the current event and
  the simulation reports the failure with the trace leading to it.

The other modules: ``network.py`` (latency, loss, duplication, reordering,
partitions, RPC), ``disk.py`` (persist batches, fsync delay, crash loss),
``node.py`` (the runtime around one replica), ``workload.py`` (clients and the
history), ``faults.py`` (the nemesis), ``simulation.py`` (one seed: phases,
convergence, final reads, checker), ``runner.py`` (seeds, sweeps, replay).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ProcessKilled(Exception):
    """The process that owned a task died (the task's future fails with this)."""


class SimTimeout(Exception):
    """``wait_for`` gave up."""


class Timer:
    """A scheduled callback; ``cancel`` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


PENDING_EVENTS_MAX = 500_000
"""A run keeps a few hundred events queued; half a million means a storm."""


class EventLoop:
    """Virtual time and a deterministic queue of events."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._sequence = 0
        self.events_run = 0
        self.halted: str | None = None
        self.pending_events_max = PENDING_EVENTS_MAX
        self.on_runaway: Callable[[str], None] = self.halt
        """Called once when more than ``pending_events_max`` events are queued: a
        message storm that would otherwise eat the machine's memory."""

    # -- scheduling ------------------------------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        when = max(when, self.now)
        timer = Timer(when, callback)
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, timer))
        return timer

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        return self.call_at(self.now + max(0.0, delay_s), callback)

    def call_soon(self, callback: Callable[[], object]) -> Timer:
        return self.call_at(self.now, callback)

    def create_future(self) -> SimFuture[Any]:
        return SimFuture(self)

    def sleep(self, delay_s: float) -> SimFuture[None]:
        future: SimFuture[None] = SimFuture(self)
        self.call_later(delay_s, lambda: future.set_result(None))
        return future

    def halt(self, reason: str) -> None:
        """Stop the run after the current event (the first reason wins)."""
        if self.halted is None:
            self.halted = reason

    # -- running ---------------------------------------------------------------------------------

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events due up to ``deadline``; False if halted or ``stop()`` became true.

        ``stop`` is evaluated after each event; keep it cheap.
        """
        heap = self._heap
        while heap and self.halted is None:
            when, _, timer = heap[0]
            if when > deadline:
                break
            heapq.heappop(heap)
            if timer.cancelled:
                continue
            self.now = when
            self.events_run += 1
            timer.callback()
            if len(heap) > self.pending_events_max:
                self.pending_events_max = 2**62  # report once
                self.on_runaway(f"runaway: {len(heap):,} events queued at {when:.3f}s")
            if stop is not None and stop():
                return False
        if self.halted is not None:
            return False
        self.now = max(self.now, deadline)
        return True

    def pending_events(self) -> int:
        return len(self._heap)


class SimFuture(Generic[T]):
    """An awaitable result that an event will provide."""

    __slots__ = ("_callbacks", "_done", "_error", "_loop", "_value")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[SimFuture[T]], None]] = []

    def done(self) -> bool:
        return self._done

    def set_result(self, value: T) -> bool:
        """Resolve; False (and nothing happens) if already resolved."""
        if self._done:
            return False
        self._done = True
        self._value = value
        self._schedule_callbacks()
        return True

    def set_exception(self, error: BaseException) -> bool:
        if self._done:
            return False
        self._done = True
        self._error = error
        self._schedule_callbacks()
        return True

    def exception(self) -> BaseException | None:
        return self._error

    def result(self) -> T:
        if not self._done:
            raise RuntimeError("future not resolved yet")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def add_done_callback(self, callback: Callable[[SimFuture[T]], None]) -> None:
        if self._done:
            self._loop.call_soon(lambda: callback(self))
        else:
            self._callbacks.append(callback)

    def _schedule_callbacks(self) -> None:
        callbacks = self._callbacks
        self._callbacks = []
        for callback in callbacks:
            self._loop.call_soon(lambda c=callback: c(self))  # type: ignore[misc]

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            yield self
        return self.result()


class Task(Generic[T]):
    """Runs a coroutine on the event loop; ``future`` resolves with its outcome."""

    __slots__ = ("_coroutine", "_finished", "_process", "future", "name", "task_id")

    def __init__(
        self,
        loop: EventLoop,
        coroutine: Coroutine[Any, Any, T],
        process: Process | None,
        name: str,
    ) -> None:
        self._coroutine = coroutine
        self._process = process
        self._finished = False
        self.name = name
        self.task_id = 0
        self.future: SimFuture[T] = SimFuture(loop)
        loop.call_soon(self._step)

    def _step(self) -> None:
        if self._finished:
            return
        try:
            awaited = self._coroutine.send(None)
        except StopIteration as stop:
            self._finish()
            self.future.set_result(stop.value)
        except BaseException as error:
            self._finish()
            self.future.set_exception(error)
        else:
            if not isinstance(awaited, SimFuture):
                self._finish()
                self._coroutine.close()
                self.future.set_exception(
                    TypeError(f"task {self.name} awaited {awaited!r}, not a SimFuture")
                )
                return
            awaited.add_done_callback(self._wake)

    def _wake(self, _: SimFuture[Any]) -> None:
        self._step()

    def _finish(self) -> None:
        self._finished = True
        if self._process is not None:
            self._process.forget(self)

    def cancel(self) -> None:
        """Close the coroutine where it waits; its future fails with ``ProcessKilled``."""
        if self._finished:
            return
        self._finished = True
        self._coroutine.close()
        self.future.set_exception(ProcessKilled(self.name))


class Process:
    """A group of tasks that die together (a node incarnation, a client, the nemesis)."""

    def __init__(self, loop: EventLoop, name: str) -> None:
        self.loop = loop
        self.name = name
        self.alive = True
        self._tasks: dict[int, Task[Any]] = {}
        self._next_task_id = 0
        self.on_task_error: Callable[[Task[Any], BaseException], None] | None = None

    def spawn(self, coroutine: Coroutine[Any, Any, T], name: str = "") -> Task[T]:
        """Start a task owned by this process. Errors other than ``ProcessKilled``
        that nobody handles go to ``on_task_error``."""
        if not self.alive:
            dead: Task[T] = Task(self.loop, coroutine, None, name)
            dead.cancel()
            return dead
        task = Task(self.loop, coroutine, self, name or self.name)
        self._next_task_id += 1
        task.task_id = self._next_task_id
        self._tasks[task.task_id] = task
        if self.on_task_error is not None:
            handler = self.on_task_error

            def report(future: SimFuture[T], task: Task[T] = task) -> None:
                error = future.exception()
                if error is not None and not isinstance(error, ProcessKilled):
                    handler(task, error)

            task.future.add_done_callback(report)
        return task

    def forget(self, task: Task[Any]) -> None:
        self._tasks.pop(task.task_id, None)

    def kill(self) -> None:
        """Close every task of this process (in the order they were started)."""
        self.alive = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()


def wait_for(loop: EventLoop, future: SimFuture[T], timeout_s: float) -> SimFuture[T]:
    """A future with ``future``'s outcome, or ``SimTimeout`` after ``timeout_s``."""
    outcome: SimFuture[T] = SimFuture(loop)
    timer = loop.call_later(timeout_s, lambda: outcome.set_exception(SimTimeout()))

    def relay(done: SimFuture[T]) -> None:
        timer.cancel()
        error = done.exception()
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(done.result())

    future.add_done_callback(relay)
    return outcome
