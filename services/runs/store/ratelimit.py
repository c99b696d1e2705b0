"""Run-creation rate limits per account per rolling hour, by plan, counted in Postgres.

Counts live in 10-second buckets (`rate_buckets`); the rolling hour is the sum of the
last 360. `take` serialises one account's takers with a transaction-scoped advisory lock,
taken inside the same statement as the count (the `rate_take` SQL function), so the limit
is exact under any concurrency and across replicas, and since it runs in the creating
transaction a run that is rolled back is not counted. CreateRun embeds that statement in
the one that inserts the run, so the lock is held only inside the server.
"""

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.runs.domain.create import RateLimitState
from weftcore.config import ConfigError, env_int
from weftcore.errors import ResourceExhausted

WINDOW_SECONDS = 3600
_WINDOW_NAMES = {WINDOW_SECONDS: "hour", 60: "minute"}  # for the 429's message
BUCKET_SECONDS = 10
DEFAULT_LIMITS = {"free": 0, "pro": 1000, "team": 5000, "enterprise": 50000}
# First half of the two-int advisory lock key: keeps these locks apart from others'.
_LOCK_CLASS = 0x5EF7_0002

# The lock and the count in one statement (migrations/0004_rate_take.sql).
TAKE_SQL = "SELECT n, oldest, took FROM rate_take($1, $2, $3, $4, $5)"
# The count alone, without the lock: what a replay reports (it takes nothing).
PEEK_SQL = (
    "SELECT coalesce(sum(count), 0)::bigint AS n, min(bucket) AS oldest FROM rate_buckets"
    " WHERE account_id = $1 AND bucket > $2::bigint - $3::bigint"
)


def limits_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Per-plan hourly limits: the defaults, overridden by WEFT_RATE_LIMIT_<PLAN>
    (read once, into services.runs.config.RunsConfig)."""
    limits = {
        plan: env_int(f"WEFT_RATE_LIMIT_{plan.upper()}", default, env)
        for plan, default in DEFAULT_LIMITS.items()
    }
    for plan, limit in limits.items():
        if limit < 0:
            raise ConfigError(
                f"environment variable WEFT_RATE_LIMIT_{plan.upper()} must not be negative,"
                f" got {limit}"
            )
    return limits


@dataclass(frozen=True)
class Ticket:
    """The arguments of one take, fixed before the statement that takes it."""

    account_id: str  # or any counter's key (a public endpoint's per-minute limits)
    bucket: int
    limit: int
    now: float
    window: int = WINDOW_SECONDS

    @classmethod
    def at(
        cls, key: str, limit: int, now: float | None = None, window: int = WINDOW_SECONDS
    ) -> "Ticket":
        """A take of `limit` per `window` seconds on `key` at `now` (default: now)."""
        now = time.time() if now is None else now
        return cls(key, int(now) // BUCKET_SECONDS * BUCKET_SECONDS, limit, now, window)

    def args(self) -> tuple[int, str, int, int, int]:  # store.writer.RateTake
        """TAKE_SQL's arguments, in order."""
        return (_LOCK_CLASS, self.account_id, self.bucket, self.limit, self.window)


def ticket(
    account_id: str, plan: str, limits: Mapping[str, int], now: float | None = None
) -> Ticket:
    """What `settle` needs to judge one take for `account_id` at `now`."""
    return Ticket.at(account_id, limits.get(plan, 0), now)


def _reset_seconds(tk: Ticket, oldest: Any) -> int:
    # The oldest counted bucket leaves the window `window` seconds after it started.
    first = tk.bucket if oldest is None else int(oldest)
    return max(1, math.ceil(first + tk.window - tk.now))


def settle(tk: Ticket, row: Mapping[str, Any], where: str = "") -> RateLimitState:
    """The state after TAKE_SQL answered `row`; ResourceExhausted when nothing was taken."""
    used, took = int(row["n"]), int(row["took"])
    reset = _reset_seconds(tk, row["oldest"])
    if not took:
        per = _WINDOW_NAMES.get(tk.window, f"{tk.window} seconds")
        raise ResourceExhausted(
            f"Rate limit of {tk.limit} runs per {per}{' ' + where if where else ''} reached."
            f" Retry after {reset} seconds.",
            code="RATE_LIMITED",
            extra={"limit": tk.limit, "remaining": 0, "retry_after": reset},
        )
    return RateLimitState(
        limit=tk.limit, remaining=max(0, tk.limit - used - 1), reset_seconds=reset
    )


def looked(tk: Ticket, row: Mapping[str, Any]) -> RateLimitState:
    """The state PEEK_SQL's `row` shows, nothing taken (e.g. for a replayed answer)."""
    return RateLimitState(
        limit=tk.limit,
        remaining=max(0, tk.limit - int(row["n"])),
        reset_seconds=_reset_seconds(tk, row["oldest"]),
    )


async def take(
    conn: asyncpg.Connection,
    account_id: str,
    plan: str,
    *,
    limits: Mapping[str, int],
    now: float | None = None,
) -> RateLimitState:
    """Count one run creation for `account_id` (the team if any, else the user).

    Raises ResourceExhausted RATE_LIMITED with extra limit/remaining/retry_after when the
    account already created `limit` runs in the last hour. Call it inside the creating
    transaction; without one, it is its own (one statement)."""
    return await _take(conn, ticket(account_id, plan, limits, now))


async def _take(conn: asyncpg.Connection, tk: Ticket, where: str = "") -> RateLimitState:
    row = await conn.fetchrow(TAKE_SQL, *tk.args())
    assert row is not None
    return settle(tk, row, where)


async def current(
    conn: asyncpg.Connection,
    account_id: str,
    plan: str,
    *,
    limits: Mapping[str, int],
    now: float | None = None,
) -> RateLimitState:
    """The account's limit, what is left of it and when a slot frees, counting nothing."""
    tk = ticket(account_id, plan, limits, now)
    row = await conn.fetchrow(PEEK_SQL, account_id, tk.bucket, WINDOW_SECONDS)
    assert row is not None
    return looked(tk, row)


class PgRateLimiter:
    """`services.runs.domain.create.RateLimiter`: takes embedded in the creating statement
    (`ticket` + `settle`), with the limits read at start (RunsConfig.rate_limits)."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)

    def ticket(self, account_id: str, plan: str) -> Ticket:
        """For CreateRun's one-statement insert (TAKE_SQL inside it), judged by `settle`."""
        return ticket(account_id, plan, self.limits)

    def settle(self, tk: Ticket, row: Mapping[str, Any]) -> RateLimitState:
        """The state after the embedded take answered `row` (see `settle`)."""
        return settle(tk, row)

    async def current(self, conn: asyncpg.Connection, account_id: str, plan: str) -> RateLimitState:
        return await current(conn, account_id, plan, limits=self.limits)

    async def take_per_minute(
        self, conn: asyncpg.Connection, key: str, limit: int, where: str
    ) -> RateLimitState:
        return await _take(conn, Ticket.at(key, limit, window=60), where)
