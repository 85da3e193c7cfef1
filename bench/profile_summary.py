"""Summarise a py-spy ``--format raw`` profile (collapsed stacks).

    .venv/bin/python bench/profile_summary.py PROFILE.raw [--top 25] [--filter TEXT]

Expects ``py-spy record --threads --native`` output (plain output works too).
Each sample is classified by its innermost frames as

- *CPU*: running Python or C code;
- *event loop idle*: the loop waiting in ``epoll`` for the next event;
- *GIL wait*: a thread waiting to take the GIL (another thread holds it, or
  the OS has not scheduled the waiter yet);
- *lock/queue wait*: a thread blocked on a lock or queue (e.g. the storage
  thread waiting for the next batch);
- *disk sync*: blocked in ``fsync``/``fdatasync`` (durability costs).

and the report gives each thread's share of samples per class, then the
functions with the most *self* CPU samples and the most *inclusive* CPU
samples (line numbers folded; entry points and the frameworks' outer frames,
present in every sample, are left out). Percentages are of all CPU samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^)]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\w+)\): ?(?P<name>.*)$")

CPU = "CPU"
LOOP_IDLE = "event loop idle"
LOCK_WAIT = "lock/queue wait"
GIL_WAIT = "GIL wait"
DISK_SYNC = "disk sync"
CLASSES = (CPU, GIL_WAIT, DISK_SYNC, LOCK_WAIT, LOOP_IDLE)

_LOOP_IDLE_MARKERS = ("epoll_wait", "epoll_pwait", "uv__io_poll", "select (selectors.py")
_LOCK_MARKERS = ("futex", "sem_clockwait")
_DISK_MARKERS = ("fdatasync", "fsync", "sync_file_range")
# Taking the GIL: CPython 3.11 waits for it on a condition variable from an
# inlined ``take_gil``, so a ``pthread_cond_*wait`` that is not under an explicit
# lock or queue (those go through ``PyThread_acquire_lock_timed``) is a GIL wait:
# a uvloop callback entering Python, or sqlite3 returning from a released-GIL call.
_CONDITION_WAITS = ("pthread_cond_timedwait", "pthread_cond_wait", "pthread_cond_clockwait")
_EXPLICIT_LOCKS = ("PyThread_acquire_lock", "_queue_SimpleQueue_get", "sem_wait", "sem_timedwait")
# Entry points and frameworks' outer frames: inclusive in everything, telling nothing.
_OUTER_FRAMES = (
    "(typer/",
    "(click/",
    "(<frozen runpy>)",
    "(causalkv/cli/",
    "(causalkv/__main__.py)",
    "(uvicorn/server.py)",
    "(uvicorn/_compat.py)",
    "(asyncio/runners.py)",
    "(threading.py)",
    "<module>",
)


def fold(frame: str) -> str:
    """``function (path:line)`` -> ``function (short path)``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({path})"


def classify(frames: list[str]) -> str:
    """The class of a sample from its innermost frames."""
    tail = frames[-6:]
    if any(marker in frame for frame in tail for marker in _DISK_MARKERS):
        return DISK_SYNC
    if any(marker in frame for frame in tail for marker in _LOOP_IDLE_MARKERS):
        return LOOP_IDLE
    explicit = any(marker in frame for frame in tail for marker in _EXPLICIT_LOCKS)
    if not explicit and any(marker in frame for frame in tail for marker in _CONDITION_WAITS):
        return GIL_WAIT
    if explicit or any(marker in frame for frame in tail for marker in _LOCK_MARKERS):
        return LOCK_WAIT
    return CPU


def _python_leaf(frames: list[str]) -> str:
    """The innermost Python frame (C frames of the interpreter itself say little)."""
    for frame in reversed(frames):
        if ".py)" in frame or "(<" in frame:
            return frame
    return frames[-1]


def hot_spots(path: Path, top: int = 25, only: str | None = None) -> dict[str, Any]:
    """Per-thread sample classes and the top frames by self and inclusive CPU share."""
    threads: dict[str, Counter[str]] = {}
    self_counts: Counter[str] = Counter()
    self_python: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    cpu_total = 0
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count = int(match.group("count"))
        raw = [f for f in match.group("stack").split(";") if f]
        thread = "main"
        if raw and (thread_match := _THREAD.match(raw[0])):
            thread = thread_match.group("name") or thread_match.group("tid")
            raw = raw[1:]
        frames = [fold(f) for f in raw]
        if not frames or (only and not any(only in f for f in frames)):
            continue
        kind = classify(frames)
        threads.setdefault(thread, Counter())[kind] += count
        if kind != CPU:
            continue
        cpu_total += count
        self_counts[frames[-1]] += count
        self_python[_python_leaf(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    busy = max(cpu_total, 1)
    total = max(sum(sum(c.values()) for c in threads.values()), 1)
    return {
        "cpu_samples": cpu_total,
        "all_samples": total,
        "threads": {
            name: {kind: round(100 * counts[kind] / total, 1) for kind in CLASSES}
            for name, counts in sorted(threads.items(), key=lambda item: -sum(item[1].values()))
        },
        "self": [(round(100 * c / busy, 1), f) for f, c in self_counts.most_common(top)],
        "self_python": [(round(100 * c / busy, 1), f) for f, c in self_python.most_common(top)],
        "inclusive": [
            (round(100 * c / busy, 1), f)
            for f, c in inclusive.most_common()
            if ".py)" in f and not any(outer in f for outer in _OUTER_FRAMES)
        ][:top],
    }


def summarise(path: Path, top: int, only: str | None) -> str:
    spots = hot_spots(path, top, only)
    out = [f"{path}: {spots['all_samples']} samples, {spots['cpu_samples']} on CPU"]
    out.append("\nPer thread, % of all samples:")
    for thread, shares in spots["threads"].items():
        out.append(f"  {thread}: " + ", ".join(f"{k} {v}%" for k, v in shares.items()))
    for title, key in (
        ("self CPU (innermost frame)", "self"),
        ("self CPU (innermost Python frame)", "self_python"),
        ("inclusive CPU (Python functions with their callees)", "inclusive"),
    ):
        out.append(f"\nTop {top} by {title}, % of CPU samples:")
        out.extend(f"  {share:5.1f}%  {frame}" for share, frame in spots[key])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default=None, help="only stacks with a frame containing this")
    arguments = parser.parse_args()
    print(summarise(arguments.profile, arguments.top, arguments.filter))


if __name__ == "__main__":
    main()
