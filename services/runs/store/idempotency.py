"""Idempotency records of creating POSTs, in Postgres so every replica shares them.

Functions take an asyncpg connection so a caller can use them inside its own transaction.
A request claims its key first, committed as `in_flight`: concurrent retries then get
409 IDEMPOTENCY_IN_FLIGHT (or, once it is done, the stored answer) without doing any of
the work. CreateRun claims before it reserves credits, and completes the key in the
transaction that writes the run; uploads do the same through IdempotencyService
(services/runs/api/idempotency_server.py). A request refused after its claim forgets the key, so the
caller can fix the problem and retry with it.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.runs.domain.create import IdempotencyRequest, StoredResponse
from weftcore.errors import Conflict
from weftcore.ids import utcnow

RETENTION = timedelta(hours=24)
# A claim left in flight this long belongs to a caller that died; a retry may take it over.
IN_FLIGHT_LEASE = timedelta(minutes=10)
# "The request never started work": the caller may fix the problem and retry with the key.
# (400/401/403/404/429 per the spec; 405/413/415 are refusals of the same kind.) A 402
# may come after work started, so `complete` stores it; CreateRun, whose 402s all come
# before any work, forgets its claim instead of completing it.
NOT_STORED = frozenset({400, 401, 403, 404, 405, 413, 415, 429})
# Each begin() purges a few expired rows now and then, so no separate job is needed.
_PURGE_CHANCE = 0.02
IN_FLIGHT_MESSAGE = "A request with this Idempotency-Key is still being processed. Retry later."
_PURGE_BATCH = 200


@dataclass(frozen=True)
class Begin:
    """proceed: the caller now holds the key; otherwise replay the stored answer."""

    proceed: bool
    http_status: int = 0
    body_json: str = ""


PROCEED = Begin(proceed=True)


async def begin(
    conn: asyncpg.Connection,
    account_id: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    now: datetime | None = None,
) -> Begin:
    """Claim `key` for this request, or answer the stored response of the same request.

    Raises Conflict IDEMPOTENCY_KEY_REUSED (same key, other method/path/body) or
    IDEMPOTENCY_IN_FLIGHT (the first request with this key has not finished)."""
    now = now or utcnow()
    if random.random() < _PURGE_CHANCE:
        await purge_expired(conn, now, limit=_PURGE_BATCH)
    for _ in range(3):
        claimed = await conn.fetchval(
            "INSERT INTO idempotency_keys (account_id, key, method, path, request_hash, state,"
            " created_at, locked_at) VALUES ($1, $2, $3, $4, $5, 'in_flight', $6, $6)"
            " ON CONFLICT (account_id, key) DO NOTHING RETURNING true",
            account_id,
            key,
            method,
            path,
            request_hash,
            now,
        )
        if claimed:
            return PROCEED
        row = await conn.fetchrow(
            "SELECT method, path, request_hash, state, http_status, body, created_at, locked_at"
            " FROM idempotency_keys WHERE account_id = $1 AND key = $2 FOR UPDATE",
            account_id,
            key,
        )
        if row is None:
            continue  # forgotten between our two statements: claim again
        expired = row["created_at"] <= now - RETENTION
        stale = row["state"] == "in_flight" and row["locked_at"] <= now - IN_FLIGHT_LEASE
        if expired or stale:
            await conn.execute(
                "UPDATE idempotency_keys SET method = $3, path = $4, request_hash = $5,"
                " state = 'in_flight', http_status = NULL, body = NULL, created_at = $6,"
                " locked_at = $6, completed_at = NULL WHERE account_id = $1 AND key = $2",
                account_id,
                key,
                method,
                path,
                request_hash,
                now,
            )
            return PROCEED
        if (row["method"], row["path"], row["request_hash"]) != (method, path, request_hash):
            raise Conflict(
                "This Idempotency-Key was already used for a different request"
                " (method, path or body). Use a new key.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if row["state"] == "in_flight":
            raise Conflict(IN_FLIGHT_MESSAGE, code="IDEMPOTENCY_IN_FLIGHT")
        return Begin(proceed=False, http_status=row["http_status"], body_json=row["body"])
    raise Conflict(IN_FLIGHT_MESSAGE, code="IDEMPOTENCY_IN_FLIGHT")


async def complete(
    conn: asyncpg.Connection,
    account_id: str,
    key: str,
    http_status: int,
    body_json: str,
    now: datetime | None = None,
) -> bool:
    """Store the answer for replays; answers whether it was stored: False when the status
    is never stored (the key is forgotten) or when the key is no longer claimed in flight
    (a caller past the lease lost it to a retry)."""
    if http_status in NOT_STORED:
        await forget(conn, account_id, key)
        return False
    done = await conn.execute(
        "UPDATE idempotency_keys SET state = 'done', http_status = $3, body = $4,"
        " completed_at = $5 WHERE account_id = $1 AND key = $2 AND state = 'in_flight'",
        account_id,
        key,
        http_status,
        body_json,
        now or utcnow(),
    )
    return bool(done == "UPDATE 1")


async def forget(conn: asyncpg.Connection, account_id: str, key: str) -> None:
    """Release a claim without storing anything: the key can be used again."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND state = 'in_flight'",
        account_id,
        key,
    )


async def purge_expired(
    conn: asyncpg.Connection, now: datetime | None = None, limit: int = 10_000
) -> int:
    """Delete up to `limit` records past the retention; answers how many went."""
    cutoff = (now or utcnow()) - RETENTION
    done = await conn.execute(
        "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys"
        " WHERE created_at <= $1 LIMIT $2)",
        cutoff,
        limit,
    )
    return int(done.split()[-1])


class PgIdempotencyStore:
    """`services.runs.domain.create.IdempotencyStore` over these functions (for CreateRun)."""

    async def begin(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> StoredResponse | None:
        got = await begin(conn, account_id, req.key, req.method, req.path, req.request_hash)
        return None if got.proceed else StoredResponse(got.http_status, got.body_json)

    async def complete(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        req: IdempotencyRequest,
        response: StoredResponse,
    ) -> None:
        stored = await complete(conn, account_id, req.key, response.http_status, response.body_json)
        if not stored and response.http_status not in NOT_STORED:
            # Our claim is gone: the caller's transaction must not commit a second answer.
            raise Conflict(IN_FLIGHT_MESSAGE, code="IDEMPOTENCY_IN_FLIGHT")

    async def forget(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> None:
        await forget(conn, account_id, req.key)
