"""Integration tests for devstack.servers: real servers from the wheels, real clients."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from minio.error import S3Error

from devstack.servers import (
    ManagedProcess,
    NatsServer,
    PostgresServer,
    SeaweedS3,
    free_port,
    group_members,
    process_tree,
)

_timings: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_start_times(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print measured start times, bypassing output capture (as capsys.disabled())."""
    yield
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if not _timings or capman is None:
        return
    with capman.global_and_fixture_disabled():
        print("\nbacking server timings:")
        for name, seconds in _timings.items():
            print(f"  {name:<34} {seconds:6.2f} s")


def _started(server: ManagedProcess, label: str) -> list[int]:
    """Start, record the time, return the PIDs of the whole process tree."""
    t0 = time.monotonic()
    server.start()
    _timings[label] = time.monotonic() - t0
    assert server.is_running()
    assert server.pid is not None
    assert server.log_path.exists()
    return process_tree(server.pid)


def _assert_gone(server: ManagedProcess, pids: list[int], leader: int) -> None:
    assert not server.is_running()
    assert server.pid is None
    assert group_members(leader) == []
    alive = [p for p in pids if _alive(p)]
    assert alive == [], f"left behind: {alive}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_free_port_is_unique_and_bindable() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
    assert all(1024 < p < 65536 for p in ports)


async def test_postgres_select_stop_restart(tmp_path: Path) -> None:
    pg = PostgresServer(tmp_path / "pg", free_port())
    try:
        pids = _started(pg, "postgres (initdb + start)")
        assert len(pids) > 1  # postmaster + its backends (which setsid() away)
        assert pg.dsn == f"postgresql://weft:weft@127.0.0.1:{pg.port}/weft"
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("select current_user") == "weft"
            assert await conn.fetchval("show max_connections") == "300"
            assert await conn.fetchval("show synchronous_commit") == "off"
            await conn.execute("create table kept (v text)")
            await conn.execute("insert into kept values ('survives restart')")
        finally:
            await conn.close()

        # TCP logins need the password.
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(pg.dsn.replace("weft:weft@", "weft:wrong@"))

        leader = pg.pid
        assert leader is not None
        pg.stop()
        _assert_gone(pg, pids, leader)
        with pytest.raises(OSError):
            await asyncpg.connect(pg.dsn, timeout=2)

        # Same data dir again: no initdb, data still there.
        _started(pg, "postgres (restart)")
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select v from kept") == "survives restart"
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_postgres_settings_override_the_dev_tuning(tmp_path: Path) -> None:
    # The benchmarks run with production durability; the rest of the dev tuning stays.
    pg = PostgresServer(tmp_path / "pg", free_port(), settings={"synchronous_commit": "on"})
    try:
        pg.start()
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("show synchronous_commit") == "on"
            assert await conn.fetchval("show fsync") == "on"
            assert await conn.fetchval("show max_connections") == "300"
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_postgres_recovers_after_sigkill(tmp_path: Path) -> None:
    # Under a root-only dir (like pytest's 0700 /tmp/pytest-of-root, which pytest keeps
    # resetting), on a path too long for a Unix socket, with awkward names/password.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    data_dir = private / ("long-" * 20) / "pg"
    pg = PostgresServer(data_dir, free_port(), database="app-db", user="app", password="it's @:/")
    try:
        pg.start()
        assert private.stat().st_mode & 0o777 == 0o700  # nothing chmodded
        su = await asyncpg.connect(pg.superuser_dsn)
        try:
            assert await su.fetchval("select current_user") == "postgres"
        finally:
            await su.close()
        conn = await asyncpg.connect(pg.dsn)
        # The dev server runs with synchronous_commit=off (a crash may lose the last
        # commits); ask for a durable commit here.
        await conn.execute("set synchronous_commit = on")
        await conn.execute("create table t (v int)")
        await conn.execute("insert into t values (7)")
        # Crash: the postmaster dies without cleanup, leaving postmaster.pid behind
        # and its backends (not in its process group) orphaned.
        assert pg.pid is not None
        pids = process_tree(pg.pid)
        os.kill(pg.pid, signal.SIGKILL)
        pg.stop()
        assert [p for p in pids if _alive(p)] == []
        assert (pg.pgdata / "postmaster.pid").exists()
        with contextlib.suppress(Exception):
            await conn.close(timeout=1)
        _started(pg, "postgres (crash recovery)")
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select v from t") == 7
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_nats_jetstream_publish_ack(tmp_path: Path) -> None:
    srv = NatsServer(tmp_path / "nats", free_port())
    try:
        pids = _started(srv, "nats")
        assert srv.url == f"nats://127.0.0.1:{srv.port}"
        nc = await nats.connect(srv.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            ack = await js.publish("t.one", b"hello")
            assert ack.stream == "T"
            assert ack.seq == 1
        finally:
            await nc.close()
        leader = srv.pid
        assert leader is not None
        srv.stop()
        _assert_gone(srv, pids, leader)

        # Restart on the same store: the stream and its message are still there.
        _started(srv, "nats (restart)")
        nc = await nats.connect(srv.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("T")
            assert info.state.messages == 1
        finally:
            await nc.close()
    finally:
        srv.stop()


def test_leftover_from_crashed_run_is_stopped(tmp_path: Path) -> None:
    first = NatsServer(tmp_path / "nats", free_port())
    second = NatsServer(tmp_path / "nats", free_port())
    try:
        first.start()
        orphan = first.pid
        assert orphan is not None
        # A new run on the same data dir (the first "crashed" without stopping).
        second.start()
        assert not _alive(orphan)
        assert second.is_running()
    finally:
        second.stop()
        first.stop()


def test_seaweed_s3_put_get_auth_restart(tmp_path: Path) -> None:
    s3 = SeaweedS3(tmp_path / "s3", free_port(), "weftkey", "weftsecret", buckets=["weft"])
    try:
        pids = _started(s3, "seaweedfs s3")
        assert s3.endpoint == f"127.0.0.1:{s3.s3_port}"
        client = s3.client()
        assert client.bucket_exists("weft")
        client.put_object("weft", "dir/a.txt", io.BytesIO(b"hello s3"), 8)
        assert client.get_object("weft", "dir/a.txt").read() == b"hello s3"

        # Auth is on: wrong credentials are refused.
        bad = SeaweedS3(tmp_path / "unused", s3.s3_port, "weftkey", "nope-nope").client(
            retries=False
        )
        with pytest.raises(S3Error):
            bad.list_buckets()

        leader = s3.pid
        assert leader is not None
        t0 = time.monotonic()
        s3.stop()
        _timings["seaweedfs s3 (stop)"] = time.monotonic() - t0
        _assert_gone(s3, pids, leader)

        _started(s3, "seaweedfs s3 (restart)")
        assert s3.client().get_object("weft", "dir/a.txt").read() == b"hello s3"
    finally:
        s3.stop()


def test_two_seaweed_stacks_side_by_side(tmp_path: Path) -> None:
    a = SeaweedS3(tmp_path / "a", free_port(), "ka", "secret-a")
    b = SeaweedS3(tmp_path / "b", free_port(), "kb", "secret-b")
    try:
        a.start()
        b.start()
        a.client().make_bucket("only-a")
        assert b.client().bucket_exists("only-a") is False
    finally:
        a.stop()
        b.stop()


async def test_whole_stack_start_time(tmp_path: Path) -> None:
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
        _timings["whole stack (fresh, sequential)"] = elapsed
        # Target: < 15 s (about 4 s on an idle 2-core machine). The bound is looser so
        # the test does not flake when other test runs load the machine.
        assert elapsed < 30
    finally:
        for server in servers:
            server.stop()
