"""Is a process still the one we knew? Used to tell a live holder (of a training's work
directory, of a Dagster run) from one that died, without trusting a recycled pid. And a
process-wide setting (a library's thread count) changed for a while."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def temporarily(get: Callable[[], T], put: Callable[[T], Any], value: T) -> Iterator[None]:
    """`put(value)` for the block, then the value `get()` gave before, whatever happens."""
    before = get()
    put(value)
    try:
        yield
    finally:
        put(before)


def _started_at(pid: int) -> float | None:
    """The process's start time (epoch seconds) from /proc; None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int, seen_at: float | None = None) -> bool:
    """True if `pid` runs on this host and, when `seen_at` (epoch seconds) is given, started no
    later than that moment: a process started afterwards reuses a dead one's pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if seen_at is not None:
        started = _started_at(pid)
        if started is not None and started > seen_at + 1.0:  # /proc's btime is whole seconds
            return False
    return True


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...) on this host, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
