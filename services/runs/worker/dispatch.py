"""The dispatcher: gives runs waiting for a concurrency slot a job again, in their turn.

A run refused a slot (executor.py: NoSlot) is `Queued`: `pending`, with no job. When
its workflow's and its account's limits have room, this loop `Requeued`s the waiting
runs that fit, the higher priority first, then the older; their jobs start them, and
the writer checks the limits again (exact, in the statement that starts a run), so a
run dispatched one pass too early is only queued again. Every worker runs this loop,
woken when one of its runs ends and at least every `interval` seconds; the writer's
version fence lets one requeue a given state.
"""

import asyncio
import logging

import asyncpg

from services.runs.domain.transitions import Requeued, RunState, advance
from services.runs.store.writer import RunWriter
from weftcore.ids import utcnow

log = logging.getLogger(__name__)

# Waiting runs ranked within their workflow and their account; those within the room
# each limit has left (its limit minus the runs holding a slot).
_DUE = """
WITH waiting AS (
    SELECT r.id, r.workflow_id, r.account_id, r.concurrency_limit, r.account_concurrency_limit,
           row_number() OVER (PARTITION BY r.workflow_id
                              ORDER BY r.priority DESC, r.created_at, r.id) AS wf_rank,
           row_number() OVER (PARTITION BY r.account_id
                              ORDER BY r.priority DESC, r.created_at, r.id) AS acct_rank
    FROM runs r WHERE r.status = 'pending' AND r.queued_at IS NOT NULL
)
SELECT r.* FROM waiting w JOIN runs r ON r.id = w.id
WHERE (w.concurrency_limit IS NULL OR w.wf_rank <= w.concurrency_limit - (
          SELECT count(*) FROM runs a WHERE a.workflow_id = w.workflow_id
            AND a.status IN ('running', 'awaiting_input')))
  AND (w.account_concurrency_limit IS NULL OR w.acct_rank <= w.account_concurrency_limit - (
          SELECT count(*) FROM runs a WHERE a.account_id = w.account_id
            AND a.status IN ('running', 'awaiting_input')))
ORDER BY r.priority DESC, r.created_at, r.id
LIMIT $1
"""


async def dispatch_once(pool: asyncpg.Pool, writer: RunWriter, limit: int = 200) -> list[str]:
    """Requeue the waiting runs that fit their limits now; answers their ids."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(_DUE, limit)
    if not rows:
        return []
    now = utcnow()
    # Pending runs have no stage rows (a rerun's inherited ones do not matter here).
    changes = [advance(RunState.from_rows(row), [Requeued()], now) for row in rows]
    written = await asyncio.gather(*(writer.write(change) for change in changes))
    return [c.run.id for c, w in zip(changes, written, strict=True) if w.applied]


class Dispatcher:
    """`dispatch_once` whenever woken (a run of this worker ended) or `interval` passed."""

    def __init__(self, pool: asyncpg.Pool, writer: RunWriter, interval: float = 0.5) -> None:
        self._pool = pool
        self._writer = writer
        self._interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled; survives outages."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await dispatch_once(self._pool, self._writer)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("dispatch pass failed; will retry", exc_info=True)
