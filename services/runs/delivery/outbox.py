"""The outbox relay: publishes committed `outbox` rows to JetStream, in id order.

Runs as a background loop (`run`) in every runs API process. Rows are claimed with
`FOR UPDATE SKIP LOCKED` so replicas share the work, published with `Nats-Msg-Id` (the
stream de-duplicates a row published twice, e.g. after a crash between the ack and the
commit), and marked published only after JetStream acked them.

Each row is a plain publish with a reply subject under one inbox of the relay's, the
acks coming back on one subscription: the same JetStream publish as the client's
`publish_async`, at a third of its CPU (the relay publishes every event of every run).

While NATS is down rows simply stay; a committed run is never lost.
"""

import asyncio
import itertools
import logging
import time

import asyncpg
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.runs.metrics import observe_published

log = logging.getLogger(__name__)

_CLAIM = """
SELECT id, subject, msg_id, payload, traceparent FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_PRUNE = "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)"


def _headers(row: asyncpg.Record) -> dict[str, str]:
    """De-duplication by the row's message id; the trace it continues, if any."""
    headers = {"Nats-Msg-Id": row["msg_id"]}
    if row["traceparent"]:
        headers["traceparent"] = row["traceparent"]
    return headers


class PublishRefused(Exception):
    """JetStream did not store a message (an error ack, or no stream for the subject)."""


class OutboxRelay:
    """Publishes the outbox; `wake()` after a commit (or a NOTIFY) to publish at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        ack_timeout: float = 5.0,
        keep_published_seconds: float = 3600.0,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._ack_timeout = ack_timeout
        self._keep_seconds = keep_published_seconds
        self._wake = asyncio.Event()
        self._inbox = ""  # where acks come back, one subscription for the relay's life
        self._tokens = itertools.count()
        self._acks: dict[str, asyncio.Future[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def publish_batch(self) -> int:
        """Publish up to one batch of unpublished rows; returns how many were published."""
        if not self._nc.is_connected:
            return 0  # publishing now would only pile up in the client's buffer
        if not self._inbox:
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.*", cb=self.on_ack)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch_size)
            if not rows:
                return 0
            # Publishes keep the wire order; acks are awaited together.
            loop = asyncio.get_running_loop()
            tokens = [str(next(self._tokens)) for _ in rows]
            acks = []
            try:
                for token, row in zip(tokens, rows, strict=True):
                    ack: asyncio.Future[None] = loop.create_future()
                    self._acks[token] = ack
                    acks.append(ack)
                    await self._nc.publish(
                        row["subject"],
                        bytes(row["payload"]),
                        reply=f"{self._inbox}.{token}",
                        headers=_headers(row),
                    )
                await asyncio.wait_for(asyncio.gather(*acks), self._ack_timeout)
            finally:
                for token in tokens:
                    self._acks.pop(token, None)
            await conn.execute(_MARK, [r["id"] for r in rows])
        observe_published(rows)  # committed: counted once
        return len(rows)

    async def on_ack(self, msg: Msg) -> None:
        """JetStream's answer to one published message: settles its pending publish."""
        ack = self._acks.pop(msg.subject.rpartition(".")[2], None)
        if ack is None or ack.done():
            return  # late: its batch already gave up and will publish again
        # {"stream": ..., "seq": ...} when stored (also for a duplicate); an error ack has
        # "error"; no stream for the subject answers an empty 503 status message.
        if msg.data.startswith(b"{") and b'"error"' not in msg.data:
            ack.set_result(None)
        else:
            ack.set_exception(PublishRefused(msg.data.decode(errors="replace") or str(msg.headers)))

    async def run(self) -> None:
        """Publish until cancelled (a weftcore.background task); failures are retried."""
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
