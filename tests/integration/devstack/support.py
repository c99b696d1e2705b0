"""Helpers for the server tests. Liveness is read from /proc here, not through
devstack.process_tree, so the code under test does not check itself."""

import time
from pathlib import Path

from devstack.managed import ManagedProcess
from devstack.process_tree import group_members, process_tree


def started(server: ManagedProcess, label: str, timings: dict[str, float]) -> list[int]:
    """Start, record the time, return the PIDs of the whole process tree."""
    t0 = time.monotonic()
    server.start()
    timings[label] = time.monotonic() - t0
    assert server.is_running()
    assert server.pid is not None
    assert server.log_path.exists()
    return process_tree(server.pid)


def assert_gone(server: ManagedProcess, pids: list[int], leader: int) -> None:
    """Stopped: no process of its tree or its group is left."""
    assert not server.is_running()
    assert server.pid is None
    assert group_members(leader) == []
    left = [p for p in pids if alive(p)]
    assert left == [], f"left behind: {left}"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
