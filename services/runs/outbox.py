"""The outbox relay: publishes committed `outbox` rows to JetStream, in id order.

Runs as a background task in every runs API process. Rows are claimed with
`FOR UPDATE SKIP LOCKED` so replicas share the work, published with `Nats-Msg-Id` (the
stream de-duplicates a row published twice, e.g. after a crash between the ack and the
commit), and marked published only after JetStream acked them. While NATS is down rows
simply stay; a committed run is never lost.
"""

import asyncio
import logging
import time

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

log = logging.getLogger(__name__)

_CLAIM = """
SELECT id, subject, msg_id, payload FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_PRUNE = "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)"


class OutboxRelay:
    """Publishes the outbox; `wake()` after a commit (or a NOTIFY) to publish at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        js: JetStreamContext,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        ack_timeout: float = 5.0,
        keep_published_seconds: float = 3600.0,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._js = js
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._ack_timeout = ack_timeout
        self._keep_seconds = keep_published_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def publish_batch(self) -> int:
        """Publish up to one batch of unpublished rows; returns how many were published."""
        if not self._nc.is_connected:
            return 0  # publishing now would only pile up in the client's buffer
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch_size)
            if not rows:
                return 0
            # publish_async keeps the wire order; acks are awaited together.
            acks = [
                await self._js.publish_async(
                    r["subject"], bytes(r["payload"]), headers={"Nats-Msg-Id": r["msg_id"]}
                )
                for r in rows
            ]
            await asyncio.wait_for(asyncio.gather(*acks), self._ack_timeout)
            await conn.execute(_MARK, [r["id"] for r in rows])
            return len(rows)

    async def _run(self) -> None:
        delay = 0.1
        last_prune = 0.0
        while True:
            try:
                # Cleared before reading, so a wake during the batch is not lost.
                self._wake.clear()
                published = await self.publish_batch()
                delay = 0.1
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    async with self._pool.acquire() as conn:
                        await conn.execute(_PRUNE, self._keep_seconds)
                if published >= self._batch_size:
                    continue
                if published == 0 or not self._nc.is_connected:
                    await self._sleep(self._poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox publish failed; will retry",
                    extra={"error": repr(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
