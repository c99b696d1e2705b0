"""devstack.managed: what every server gets from ManagedProcess, shown on the real ones
(a leftover of a crashed run is stopped; the three backing servers start in time)."""

import time
from pathlib import Path

from devstack.managed import ManagedProcess
from devstack.nats import NatsServer
from devstack.ports import free_port
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3
from tests.integration.devstack.support import alive


def test_leftover_from_crashed_run_is_stopped(tmp_path: Path) -> None:
    first = NatsServer(tmp_path / "nats", free_port())
    second = NatsServer(tmp_path / "nats", free_port())
    try:
        first.start()
        orphan = first.pid
        assert orphan is not None
        # A new run on the same data dir (the first "crashed" without stopping).
        second.start()
        assert not alive(orphan)
        assert second.is_running()
    finally:
        second.stop()
        first.stop()


async def test_whole_stack_start_time(tmp_path: Path, timings: dict[str, float]) -> None:
    servers: list[ManagedProcess] = [
        PostgresServer(tmp_path / "pg", free_port()),
        NatsServer(tmp_path / "nats", free_port()),
        SeaweedS3(tmp_path / "s3", free_port(), "weftkey", "weftsecret", buckets=["weft"]),
    ]
    t0 = time.monotonic()
    try:
        for server in servers:
            server.start()
        elapsed = time.monotonic() - t0
        timings["whole stack (fresh, sequential)"] = elapsed
        # Target: < 15 s (about 4 s on an idle 2-core machine). The bound is looser so
        # the test does not flake when other test runs load the machine.
        assert elapsed < 30
    finally:
        for server in servers:
            server.stop()
