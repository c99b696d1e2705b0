"""CPU time per component, from /proc: which process of the stack spends what.

`snapshot()` before and after a phase; `per_component(before, after)` sums user+system
seconds of every process alive at the end (children too: PostgreSQL backends, gateway
workers), grouped by what it runs. Linux only.

On a machine shared with other stacks (other engineers' tests), pass `snapshot` the
stack's own process ids: only their process trees are then named by component, and
another stack's PostgreSQL or gateway counts as "other", not as ours.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from devstack.process_tree import process_tree

_TICKS = os.sysconf("SC_CLK_TCK")
# Command-line fragments -> component, first match wins.
_COMPONENTS = (
    ("tests.support.fake_llm", "fake_llm"),  # bench_runs' model server, not Weft's
    ("services.runs.worker", "worker"),
    ("services.runs", "runs"),
    ("services.billing", "billing"),
    ("services.auth", "auth"),
    ("services.storage", "storage"),
    ("-m gateway", "gateway"),
    ("postgres", "postgres"),
    ("nats-server", "nats"),
    ("wrk", "wrk"),
)

Snapshot = dict[int, tuple[str, float]]


def snapshot(roots: Iterable[int] | None = None) -> Snapshot:
    """pid -> (component, CPU seconds so far) for every process we can read; with
    `roots`, any process outside their trees is "other"."""
    ours = None if roots is None else {pid for root in roots for pid in process_tree(root)}
    found: Snapshot = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        component = next((name for part, name in _COMPONENTS if part in cmdline), "other")
        if ours is not None and int(entry.name) not in ours:
            component = "other"
        found[int(entry.name)] = (component, seconds)
    return found


def per_component(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds spent between the snapshots, by component (largest first)."""
    spent: dict[str, float] = {}
    for pid, (component, seconds) in after.items():
        _, earlier = before.get(pid, (component, 0.0))
        spent[component] = spent.get(component, 0.0) + seconds - earlier
    return dict(sorted(spent.items(), key=lambda item: -item[1]))
