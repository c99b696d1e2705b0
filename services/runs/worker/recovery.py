"""Recovery: re-enqueue runs whose worker died, and pending runs whose job got lost;
fail the runs past their deadline that no worker ended.

A `running` run whose heartbeat is older than `stale_seconds` has no live worker (they
beat every few seconds while executing). It is `Requeued` (worker_id cleared, a new job
through the outbox); the next worker resumes it from its last persisted stage. Every
worker runs this loop: the writer's version fence lets only one requeue a given state.

A run's own worker fails it with TIMEOUT the moment its deadline passes (executor.py).
Runs no worker holds then (waiting for input, or their worker died) are `TimedOut`
here, `grace_seconds` after the deadline so that a live worker's write comes first.
"""

import asyncio
import logging

import asyncpg

from services.runs.domain.transitions import Requeued, RunState, TimedOut, Transition, advance
from services.runs.store.writer import RunWriter
from weftcore.ids import utcnow

log = logging.getLogger(__name__)

_STALE = """
SELECT * FROM runs
WHERE (status = 'running'
       AND coalesce(heartbeat_at, updated_at) < now() - make_interval(secs => $1))
   OR (status = 'pending' AND updated_at < now() - make_interval(secs => $2))
ORDER BY id
LIMIT $3
"""
_TIMED_OUT = """
SELECT * FROM runs
WHERE deadline_at < now() - make_interval(secs => $1)
  AND deadline_at IS NOT NULL AND status IN ('pending', 'running', 'awaiting_input')
ORDER BY deadline_at
LIMIT $2
"""
_STAGES = "SELECT * FROM stage_results WHERE run_id = ANY($1::text[])"


async def recover_once(
    pool: asyncpg.Pool,
    writer: RunWriter,
    stale_seconds: float,
    pending_seconds: float,
    limit: int = 200,
) -> list[str]:
    """Fail runs past their deadline, then re-enqueue stuck runs; answers the ids of
    those this call requeued."""
    async with pool.acquire() as conn:
        late = await conn.fetch(_TIMED_OUT, float(stale_seconds), limit)
    timed_out = await _write_each(pool, writer, late, TimedOut())
    if timed_out:
        log.info("timed out runs", extra={"run_ids": timed_out[:20], "count": len(timed_out)})
    async with pool.acquire() as conn:
        rows = await conn.fetch(_STALE, float(stale_seconds), float(pending_seconds), limit)
    ids = await _write_each(pool, writer, rows, Requeued())
    if ids:
        log.warning("re-enqueued stuck runs", extra={"run_ids": ids[:20], "count": len(ids)})
    return ids


async def _write_each(
    pool: asyncpg.Pool, writer: RunWriter, rows: list[asyncpg.Record], transition: Transition
) -> list[str]:
    """Apply `transition` to each run read in `rows`; the ids of those it was written to
    (the others moved on meanwhile)."""
    if not rows:
        return []
    async with pool.acquire() as conn:
        stages: dict[str, list[asyncpg.Record]] = {}
        for stage in await conn.fetch(_STAGES, [row["id"] for row in rows]):
            stages.setdefault(stage["run_id"], []).append(stage)
    now = utcnow()
    changes = [
        advance(RunState.from_rows(row, stages.get(row["id"], [])), [transition], now)
        for row in rows
    ]
    written = await asyncio.gather(*(writer.write(change) for change in changes))
    return [c.run.id for c, w in zip(changes, written, strict=True) if w.applied]


async def recovery_loop(
    pool: asyncpg.Pool,
    writer: RunWriter,
    stale_seconds: float,
    pending_seconds: float,
    interval: float,
) -> None:
    """Run recover_once every `interval` seconds until cancelled; survive outages."""
    while True:
        try:
            await recover_once(pool, writer, stale_seconds, pending_seconds)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            log.warning("recovery pass failed; will retry", exc_info=True)
        await asyncio.sleep(interval)
