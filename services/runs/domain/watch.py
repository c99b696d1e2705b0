"""WatchRun: a run's lifecycle events, replayed from `run_events` and then live.

`run_events` is the source of truth (an event exists iff its state change committed), so
the stream always reads from it, in seq order, after the last seq it sent. Live delivery
only needs a wake-up: a core NATS subscription on `weft.runs.<id>.>` (the outbox relay
publishes every event there after its commit) and the Postgres notifier's status change
of the run (which also wakes everyone after a reconnect). Only when NATS cannot be
subscribed to does the stream re-read on a timer, for the stage events that change no
status. The stream ends after a terminal event.

Streamed tokens (`stage.delta`) come from JetStream, not Postgres (domain/token_feed.py):
each sits between the event it follows and the next, so they interleave exactly; a token
only wakes the stream to pass it on, without reading the database.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from nats.aio.client import Client

from services.runs.domain.create import Caller
from services.runs.domain.token_feed import TokenDelta, TokenFeed
from services.runs.store.notify import Notifier
from weftcore.errors import NotFound
from weftcore.events import TERMINAL_EVENTS, TERMINAL_STATUSES
from weftcore.logs import error_text
from weftcore.nats import event_subject

log = logging.getLogger(__name__)

_EVENTS = """
SELECT seq, event_id, type, stage, payload, created_at FROM run_events
WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""
_BATCH = 200


class RunWatcher:
    """Streams events of one run at a time per call; shares the pool and NATS client."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client | None,
        notifier: Notifier | None = None,
        recheck_seconds: float = 2.0,
    ):
        self._pool = pool
        self._nc = nc
        self._notifier = notifier
        self._recheck = recheck_seconds

    async def _subscribe(self, run_id: str, wake: asyncio.Event) -> Any:
        if self._nc is None or not self._nc.is_connected:
            return None

        async def on_message(_msg: Any) -> None:
            wake.set()

        try:
            return await self._nc.subscribe(event_subject(run_id, ">"), cb=on_message)
        except Exception as exc:  # polling still delivers everything, only later
            log.warning(
                "event subscription failed", extra={"run_id": run_id, "error": error_text(exc)}
            )
            return None

    async def check_visible(self, caller: Caller, run_id: str) -> None:
        """NotFound unless the caller may see the run."""
        owner = await self._pool.fetchrow(
            "SELECT user_id, workflow_id FROM runs WHERE id = $1", run_id
        )
        if owner is None or not caller.can_see_run(owner["user_id"], owner["workflow_id"]):
            raise NotFound(f"No such run: {run_id}.")

    async def events(
        self, run_id: str, after_seq: int = 0, after_delta: int = 0
    ) -> AsyncIterator[asyncpg.Record | TokenDelta]:
        """The run's event rows after `after_seq`, with its streamed tokens after
        `(after_seq, after_delta)` between them, as they happen; ends after a terminal
        event (at once if the run already ended before `after_seq`). Check that the
        caller may see the run first (`check_visible`)."""
        wake = asyncio.Event()
        tokens = asyncio.Event()
        # Subscribe before the first read so nothing committed in between is missed.
        status_changed = self._notifier.watch(run_id) if self._notifier is not None else None
        sub = await self._subscribe(run_id, wake)
        feed = TokenFeed(self._nc, run_id, max(after_seq, 0), max(after_delta, 0))
        feed.wake = tokens
        await feed.start()
        recheck = None if sub is not None else self._recheck
        last = max(after_seq, 0)
        ended = False
        read = True
        try:
            while True:
                tokens.clear()  # before the flush below: a token after it wakes the wait
                if not read:  # only tokens came: pass them on, no database read
                    for delta in feed.take(last):
                        yield delta
                else:
                    wake.clear()
                    if status_changed is not None:
                        status_changed.clear()
                    rows = await self._pool.fetch(_EVENTS, run_id, last, _BATCH)
                    if rows:
                        await feed.catch_up()
                    for row in rows:
                        for delta in feed.take(int(row["seq"]) - 1):
                            yield delta
                        yield row
                        last = int(row["seq"])
                        if row["type"] in TERMINAL_EVENTS:
                            return
                    for delta in feed.take(last):
                        yield delta
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
                await _either(wake, status_changed, recheck, tokens)
                changed = status_changed is not None and status_changed.is_set()
                read = wake.is_set() or changed or not tokens.is_set()
        finally:
            await feed.stop()
            if status_changed is not None and self._notifier is not None:
                self._notifier.unwatch(run_id, status_changed)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


async def _either(
    a: asyncio.Event,
    b: asyncio.Event | None,
    timeout: float | None,
    c: asyncio.Event | None = None,
) -> None:
    """Returns once `a`, `b` or `c` is set, or after `timeout` seconds (None: none)."""
    waits = [asyncio.ensure_future(a.wait())]
    for other in (b, c):
        if other is not None:
            waits.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
