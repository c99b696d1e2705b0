"""Wiring of the idempotency records and rate limits (services/runs/idempotency*.py,
ratelimit.py) into CreateRun and the Begin/CompleteIdempotent RPCs."""

from types import SimpleNamespace
from typing import Any

import asyncpg

from services.runs import idempotency
from services.runs import idempotency_rpc as _rpc
from services.runs.create import IdempotencyRequest, IdempotencyStore, RateLimiter, StoredResponse
from services.runs.idempotency import PgIdempotencyStore
from services.runs.ratelimit import PgRateLimiter
from weftcore.errors import Conflict
from weftcore.ids import utcnow

idempotency_rpc: Any = SimpleNamespace(begin=_rpc.begin_rpc, complete=_rpc.complete_rpc)


class PeekingIdempotencyStore(PgIdempotencyStore):
    """Adds a lock-free look before credits are reserved: a retry of a finished request
    is replayed (or refused as reused) without touching billing, so it answers the
    original response even when the account has no credits left by now."""

    async def peek(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> StoredResponse | None:
        row = await conn.fetchrow(
            "SELECT method, path, request_hash, state, http_status, body FROM idempotency_keys"
            " WHERE account_id = $1 AND key = $2 AND created_at > $3",
            account_id,
            req.key,
            utcnow() - idempotency.RETENTION,
        )
        if row is None or row["state"] != "done":
            return None  # begin() inside the transaction decides
        if (row["method"], row["path"], row["request_hash"]) != (
            req.method,
            req.path,
            req.request_hash,
        ):
            raise Conflict(
                "This Idempotency-Key was already used for a different request"
                " (method, path or body). Use a new key.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        return StoredResponse(row["http_status"], row["body"])


def make_idempotency() -> IdempotencyStore:
    return PeekingIdempotencyStore()


def make_rate_limiter() -> RateLimiter:
    """Per-plan hourly limits read once from WEFT_RATE_LIMIT_<PLAN>."""
    return PgRateLimiter()
