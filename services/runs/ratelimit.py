"""Run-creation rate limits per account per rolling hour, by plan, counted in Postgres.

Counts live in 10-second buckets (`rate_buckets`); the rolling hour is the sum of the
last 360. `take` serialises one account's takers with a transaction-scoped advisory lock,
so the limit is exact under any concurrency and across replicas, and since it runs in the
creating transaction a run that is rolled back is not counted.
"""

import math
import time
from collections.abc import Mapping

import asyncpg

from services.runs.create import RateLimitState
from weftcore.config import env_int
from weftcore.errors import ResourceExhausted

WINDOW_SECONDS = 3600
BUCKET_SECONDS = 10
DEFAULT_LIMITS = {"free": 0, "pro": 1000, "team": 5000, "enterprise": 50000}
# First half of the two-int advisory lock key: keeps these locks apart from others'.
_LOCK_CLASS = 0x5EF7_0002

_TAKE = """
WITH used AS (
    SELECT coalesce(sum(count), 0)::bigint AS n, min(bucket) AS oldest
    FROM rate_buckets WHERE account_id = $1 AND bucket > $2 - $4::bigint
), gone AS (
    DELETE FROM rate_buckets WHERE account_id = $1 AND bucket <= $2 - $4::bigint
), taken AS (
    INSERT INTO rate_buckets (account_id, bucket, count)
    SELECT $1, $2, 1 FROM used WHERE used.n < $3
    ON CONFLICT (account_id, bucket) DO UPDATE SET count = rate_buckets.count + 1
    RETURNING 1
)
SELECT used.n, used.oldest, (SELECT count(*) FROM taken) AS took FROM used
"""


def limits_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Per-plan hourly limits: the defaults, overridden by WEFT_RATE_LIMIT_<PLAN>."""
    return {
        plan: env_int(f"WEFT_RATE_LIMIT_{plan.upper()}", default, env)
        for plan, default in DEFAULT_LIMITS.items()
    }


async def take(
    conn: asyncpg.Connection,
    account_id: str,
    plan: str,
    now: float | None = None,
    limits: Mapping[str, int] | None = None,
) -> RateLimitState:
    """Count one run creation for `account_id` (the team if any, else the user).

    Raises ResourceExhausted RATE_LIMITED with extra limit/remaining/retry_after when the
    account already created `limit` runs in the last hour. Call it inside the creating
    transaction; without one, it opens its own."""
    now = time.time() if now is None else now
    limit = (limits if limits is not None else limits_from_env()).get(plan, 0)
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await take(conn, account_id, plan, now, limits)
    bucket = int(now) // BUCKET_SECONDS * BUCKET_SECONDS
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, account_id)
    row = await conn.fetchrow(_TAKE, account_id, bucket, limit, WINDOW_SECONDS)
    assert row is not None
    used, oldest, took = int(row["n"]), row["oldest"], int(row["took"])
    # The oldest counted bucket leaves the window WINDOW_SECONDS after it started.
    first = bucket if oldest is None else int(oldest)
    reset = max(1, math.ceil(first + WINDOW_SECONDS - now))
    if not took:
        raise ResourceExhausted(
            f"Rate limit of {limit} runs per hour reached. Retry after {reset} seconds.",
            code="RATE_LIMITED",
            extra={"limit": limit, "remaining": 0, "retry_after": reset},
        )
    return RateLimitState(limit=limit, remaining=max(0, limit - used - 1), reset_seconds=reset)


class PgRateLimiter:
    """`services.runs.create.RateLimiter` over `take`, with limits read once at start."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.limits = dict(limits) if limits is not None else limits_from_env()

    async def take(self, conn: asyncpg.Connection, account_id: str, plan: str) -> RateLimitState:
        return await take(conn, account_id, plan, limits=self.limits)
