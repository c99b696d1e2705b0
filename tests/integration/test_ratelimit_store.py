"""The rate counters against the real Postgres: exact under concurrency, rolling window,
per-plan limits, and nothing counted for a rolled-back creation."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.runs.store import ratelimit
from weftcore.db import create_pool
from weftcore.errors import ResourceExhausted

LIMITS = {"free": 0, "pro": 25, "team": 40, "enterprise": 100}


@pytest.fixture(scope="module")
async def pool(stack: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.dsn, "runs", min_size=1, max_size=20)
    yield pool
    await pool.close()


async def take(pool: asyncpg.Pool, account: str, plan: str, now: float | None = None) -> Any:
    try:
        async with pool.acquire() as conn, conn.transaction():
            return await ratelimit.take(conn, account, plan, now=now, limits=LIMITS)
    except ResourceExhausted as exc:
        return exc


async def test_exactly_the_limit_under_concurrency(pool: asyncpg.Pool) -> None:
    account = f"team_{uuid.uuid4().hex}"
    results = await asyncio.gather(*(take(pool, account, "team") for _ in range(60)))
    ok = [r for r in results if not isinstance(r, ResourceExhausted)]
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(ok) == 40 and len(refused) == 20
    assert sorted(r.remaining for r in ok) == list(range(40))
    err = refused[0]
    assert err.code == "RATE_LIMITED"
    assert err.extra["limit"] == 40 and err.extra["remaining"] == 0
    assert 0 < err.extra["retry_after"] <= 3600


async def test_the_window_rolls(pool: asyncpg.Pool) -> None:
    account = f"usr_{uuid.uuid4().hex}"
    start = time.time() - 3000
    for i in range(25):
        state = await take(pool, account, "pro", now=start + i)
        assert state.remaining == 24 - i
    refused = await take(pool, account, "pro", now=start + 1000)
    assert isinstance(refused, ResourceExhausted)
    # Retry-After points at when the first counted bucket leaves the hour.
    assert abs(refused.extra["retry_after"] - (3600 - 1000)) <= ratelimit.BUCKET_SECONDS
    later = await take(pool, account, "pro", now=start + 3600 + ratelimit.BUCKET_SECONDS * 3)
    assert not isinstance(later, ResourceExhausted)
    assert later.remaining == 24  # everything from an hour ago left the window


async def test_free_plan_and_rollback(pool: asyncpg.Pool) -> None:
    account = f"usr_{uuid.uuid4().hex}"
    assert isinstance(await take(pool, account, "free"), ResourceExhausted)
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await ratelimit.take(conn, account, "pro", limits=LIMITS)
                raise RuntimeError("the creation failed later")
    state = await take(pool, account, "pro")
    assert state.remaining == 24  # the rolled-back creation was not counted


def test_limits_come_from_the_environment() -> None:
    limits = ratelimit.limits_from_env({"WEFT_RATE_LIMIT_PRO": "7"})
    assert limits == {"free": 0, "pro": 7, "team": 5000, "enterprise": 50000}
