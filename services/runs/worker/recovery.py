"""Recovery: re-enqueue runs whose worker died, and pending runs whose job got lost.

A `running` run whose heartbeat is older than `stale_seconds` has no live worker (they
beat every few seconds while executing). Its lease is cleared (worker_id NULL) and a new
job is queued through the outbox; the next worker resumes it from its last persisted
stage. Rows are picked with FOR UPDATE SKIP LOCKED and updated in the same statement,
so any number of workers can run this loop without queueing a run twice per period.
"""

import asyncio
import logging

import asyncpg

from services.runs.store.events import enqueue_job

log = logging.getLogger(__name__)

_STALE = """
WITH stale AS (
    SELECT id FROM runs
    WHERE (status = 'running'
           AND coalesce(heartbeat_at, updated_at) < now() - make_interval(secs => $1))
       OR (status = 'pending' AND updated_at < now() - make_interval(secs => $2))
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE runs SET worker_id = NULL, heartbeat_at = now(), updated_at = now()
FROM stale WHERE runs.id = stale.id
RETURNING runs.id, runs.status
"""


async def recover_once(
    pool: asyncpg.Pool, stale_seconds: float, pending_seconds: float, limit: int = 200
) -> list[str]:
    """Re-enqueue stuck runs; answers their ids."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_STALE, float(stale_seconds), float(pending_seconds), limit)
        for row in rows:
            await enqueue_job(conn, row["id"])
    ids = [row["id"] for row in rows]
    if ids:
        log.warning("re-enqueued stuck runs", extra={"run_ids": ids[:20], "count": len(ids)})
    return ids


async def recovery_loop(
    pool: asyncpg.Pool, stale_seconds: float, pending_seconds: float, interval: float
) -> None:
    """Run recover_once every `interval` seconds until cancelled; survive outages."""
    while True:
        try:
            await recover_once(pool, stale_seconds, pending_seconds)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            log.warning("recovery pass failed; will retry", exc_info=True)
        await asyncio.sleep(interval)
