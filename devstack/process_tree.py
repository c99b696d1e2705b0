"""Process groups and process trees, read from /proc: who belongs to a server, and
stopping all of it (our children or leftovers of a crashed run alike)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import NamedTuple

POLL_INTERVAL = 0.05


class ProcStat(NamedTuple):
    """The fields of /proc/PID/stat that tell who a process belongs to."""

    state: str
    ppid: int
    pgrp: int
    start: int  # start time in clock ticks: tells a reused PID apart


def proc_stat(pid: int) -> ProcStat | None:
    """A process's /proc/PID/stat fields we need, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    f = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcStat(f[0], int(f[1]), int(f[2]), int(f[19]))
    except (IndexError, ValueError):
        return None


def live_stats() -> dict[int, ProcStat]:
    """All live processes. Zombies count as gone: once a server dies its orphans are
    reparented to PID 1, which in a container may never reap them, yet they hold
    nothing (no ports, no files)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st.state not in ("Z", "X"):
                stats[int(entry)] = st
    return stats


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in a process group."""
    return sorted(pid for pid, st in live_stats().items() if st.pgrp == pgid)


def process_tree(pid: int) -> list[int]:
    """``pid``, its live descendants and the live members of its process group.

    Descendants matter as well as the group: PostgreSQL's backends call setsid(), so
    they are not in the postmaster's process group.
    """
    stats = live_stats()
    found = {p for p, st in stats.items() if st.pgrp == pid}
    if pid in stats:
        found.add(pid)
    frontier = set(found)
    while frontier:
        frontier = {p for p, st in stats.items() if st.ppid in frontier} - found
        found |= frontier
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def terminate_tree(leader: int, sig: int, grace: float) -> bool:
    """Send ``sig`` to ``leader``; wait up to ``grace`` s for it, its descendants and
    its process group to exit; then SIGKILL whatever is left. Works for processes that
    are not our children too (leftovers of a crashed run).
    Returns True if everything exited without SIGKILL."""
    tracked: dict[int, int] = {}  # pid -> start time

    def remaining() -> list[int]:
        for p in process_tree(leader):  # pick up children forked meanwhile
            st = proc_stat(p)
            if st is not None:
                tracked.setdefault(p, st.start)
        alive = []
        for p, start in tracked.items():
            st = proc_stat(p)
            if st is not None and st.start == start and st.state not in ("Z", "X"):
                alive.append(p)
        return alive

    remaining()
    with contextlib.suppress(ProcessLookupError):
        os.kill(leader, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not remaining():
            return True
        time.sleep(POLL_INTERVAL)
    deadline = time.monotonic() + 10.0
    while (left := remaining()) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(POLL_INTERVAL)
    return False


def exe_of(pid: int) -> Path | None:
    """The executable ``pid`` runs, or None if that cannot be read."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)"))
    except OSError:
        return None


def same_file(a: Path | None, b: Path) -> bool:
    """Whether ``a`` and ``b`` are the same file (False when ``a`` is None)."""
    if a is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
