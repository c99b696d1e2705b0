"""devstack.process_tree: a tree is found and stopped whole, even a child that left the
group with setsid() (as PostgreSQL's backends do)."""

import signal
import subprocess
import sys
import time

from devstack.process_tree import group_members, process_tree, terminate_tree
from tests.integration.devstack.support import alive

# Forks a child that setsid()s away from the group and then prints its PID; both sleep.
# They ignore SIGTERM, so only the SIGKILL after the grace period stops them.
TREE = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    print(os.getpid(), flush=True)
time.sleep(60)
"""


def test_terminate_tree_stops_descendants_outside_the_group() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert leader.stdout is not None
        child = int(leader.stdout.readline())
        assert process_tree(leader.pid) == sorted([leader.pid, child])
        assert group_members(leader.pid) == [leader.pid]  # the child left the group
        t0 = time.monotonic()
        assert terminate_tree(leader.pid, signal.SIGTERM, grace=0.5) is False  # SIGKILLed
        assert time.monotonic() - t0 < 10
        leader.wait(timeout=5)
        assert not alive(leader.pid) and not alive(child)
    finally:
        leader.kill()
        leader.wait()
