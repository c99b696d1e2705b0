"""WatchRun: a run's lifecycle events, replayed from `run_events` and then live.

`run_events` is the source of truth (an event exists iff its state change committed), so
the stream always reads from it, in seq order, after the last seq it sent. Live delivery
only needs a wake-up: a core NATS subscription on `weft.runs.<id>.>` (the outbox relay
publishes every event there after its commit), plus a slow re-read in case NATS is down
or a message was missed. The stream ends after a terminal event.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from nats.aio.client import Client

from services.runs.create import Caller
from weftcore.errors import NotFound
from weftcore.events import TERMINAL_EVENTS, TERMINAL_STATUSES
from weftcore.nats import event_subject

log = logging.getLogger(__name__)

_EVENTS = """
SELECT seq, event_id, type, stage, payload, created_at FROM run_events
WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""
_BATCH = 200


class RunWatcher:
    """Streams events of one run at a time per call; shares the pool and NATS client."""

    def __init__(self, pool: asyncpg.Pool, nc: Client | None, recheck_seconds: float = 2.0):
        self._pool = pool
        self._nc = nc
        self._recheck = recheck_seconds

    async def _subscribe(self, run_id: str, wake: asyncio.Event) -> Any:
        if self._nc is None or not self._nc.is_connected:
            return None

        async def on_message(_msg: Any) -> None:
            wake.set()

        try:
            return await self._nc.subscribe(event_subject(run_id, ">"), cb=on_message)
        except Exception as exc:  # polling still delivers everything, only later
            log.warning("event subscription failed", extra={"run_id": run_id, "error": str(exc)})
            return None

    async def events(
        self, caller: Caller, run_id: str, after_seq: int = 0
    ) -> AsyncIterator[asyncpg.Record]:
        """The run's event rows after `after_seq`, as they happen; ends after a terminal
        event (at once if the run already ended before `after_seq`). A run the caller
        may not see: NotFound."""
        owner = await self._pool.fetchrow(
            "SELECT user_id, workflow_id FROM runs WHERE id = $1", run_id
        )
        if owner is None or not caller.can_see_run(owner["user_id"], owner["workflow_id"]):
            raise NotFound(f"No such run: {run_id}.")
        wake = asyncio.Event()
        # Subscribe before the first read so nothing committed in between is missed.
        sub = await self._subscribe(run_id, wake)
        last = max(after_seq, 0)
        ended = False
        try:
            while True:
                wake.clear()
                rows = await self._pool.fetch(_EVENTS, run_id, last, _BATCH)
                for row in rows:
                    yield row
                    last = int(row["seq"])
                    if row["type"] in TERMINAL_EVENTS:
                        return
                if len(rows) == _BATCH:
                    continue
                if not rows:
                    status = await self._pool.fetchval(
                        "SELECT status FROM runs WHERE id = $1", run_id
                    )
                    if status in TERMINAL_STATUSES:
                        # Its terminal event committed with the status: one more read
                        # catches it if it landed just after ours, else it was sent.
                        if ended:
                            return
                        ended = True
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._recheck)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
