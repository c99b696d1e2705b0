"""One dedicated Postgres connection LISTENing for the runs service's notifications.

`weft_run_status` (payload: run id) wakes long-polls; `weft_outbox` wakes the relay;
`weft_webhooks` wakes the webhook dispatcher. All are fed by triggers (migrations), so
changes made by the workers wake the API process too. If the connection drops, it is
reopened; callers also poll slowly, so a lost notification costs latency, never
correctness.
"""

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from weftcore.logs import error_text

log = logging.getLogger(__name__)

RUN_STATUS_CHANNEL = "weft_run_status"
OUTBOX_CHANNEL = "weft_outbox"
WEBHOOKS_CHANNEL = "weft_webhooks"


class Notifier:
    """Dispatches run status notifications to waiters, outbox and webhook ones to their
    callbacks."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        on_outbox: Callable[[], None],
        on_webhooks: Callable[[], None] = lambda: None,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._on_outbox = on_outbox
        self._on_webhooks = on_webhooks
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def watch(self, run_id: str) -> asyncio.Event:
        """An event set on the next status change of `run_id`; pair with `unwatch`."""
        event = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(event)
        return event

    def unwatch(self, run_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(run_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[run_id]

    def _listener(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self.dispatch(channel, str(payload))

    def dispatch(self, channel: str, payload: str) -> None:
        """A NOTIFY on `channel` arrived: wake what waits for it."""
        if channel == OUTBOX_CHANNEL:
            self._on_outbox()
            return
        if channel == WEBHOOKS_CHANNEL:
            self._on_webhooks()
            return
        for event in self._waiters.get(payload, ()):
            event.set()

    async def run(self) -> None:
        """Listen until cancelled (a weftcore.background task), reconnecting as needed."""
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"search_path": self._schema}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())  # type: ignore[misc]
                await conn.add_listener(RUN_STATUS_CHANNEL, self._listener)
                await conn.add_listener(OUTBOX_CHANNEL, self._listener)
                await conn.add_listener(WEBHOOKS_CHANNEL, self._listener)
                delay = 0.2
                # Anything that happened while we were not listening: wake everyone.
                self._on_outbox()
                self._on_webhooks()
                for events in self._waiters.values():
                    for event in events:
                        event.set()
                await lost.wait()
                log.warning("notification connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification listener failed", extra={"error": error_text(exc)})
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
