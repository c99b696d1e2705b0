"""The streamed tokens of one run, read back from JetStream for WatchRun.

The worker publishes each piece of an LLM stage's answer on `weft.deltas.<run_id>`
(services/runs/worker/deltas.py), numbered `(seq, n)`: the n-th piece after the run's
event `seq`. A piece sorts between that event and the next, so an SSE client's
Last-Event-ID (`seq` or `seq.n`) says exactly where to resume. The feed is an ordered
push consumer from the subject's first message (the stream keeps a few minutes), which
skips what the client has seen; `catch_up` makes sure every piece published before a
lifecycle event is here before that event is sent on (they are published, and acked,
before the stage's result is written).
"""

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from weftcore.logs import error_text
from weftcore.nats import DELTAS_STREAM, delta_subject

log = logging.getLogger(__name__)

CATCH_UP_SECONDS = 2.0


@dataclass(frozen=True)
class TokenDelta:
    """A piece of a stage's answer: the `n`th after the run's event `seq`."""

    seq: int
    n: int
    stage: str
    text: str


class TokenFeed:
    """Pieces of one run after a resume point `(after_seq, after_n)`, in order."""

    def __init__(self, nc: Client | None, run_id: str, after_seq: int, after_n: int) -> None:
        self._nc = nc
        self._run_id = run_id
        self._after = (after_seq, after_n)
        self._buffer: list[TokenDelta] = []
        self._stream_seq = 0  # the last stream sequence received
        self._arrived = asyncio.Event()
        self._sub: Any = None
        self.wake: asyncio.Event | None = None  # set when a piece arrives

    async def start(self) -> None:
        """Subscribe; without NATS the run's events still flow, without tokens."""
        if self._nc is None or not self._nc.is_connected:
            return
        try:
            self._sub = await self._nc.jetstream().subscribe(
                delta_subject(self._run_id),
                cb=self._on_message,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
        except Exception as exc:
            extra = {"run_id": self._run_id, "error": error_text(exc)}
            log.warning("token subscription failed", extra=extra)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_message(self, msg: Any) -> None:
        self._stream_seq = max(self._stream_seq, int(msg.metadata.sequence.stream))
        try:
            doc = json.loads(msg.data)
            delta = TokenDelta(int(doc["seq"]), int(doc["n"]), str(doc["stage"]), str(doc["text"]))
        except (ValueError, KeyError, TypeError):
            return
        if (delta.seq, delta.n) > self._after:
            self._buffer.append(delta)
        self._arrived.set()
        if self.wake is not None:
            self.wake.set()

    async def catch_up(self) -> None:
        """Wait (briefly) until every piece already in the stream has arrived."""
        if self._sub is None or self._nc is None:
            return
        try:
            last = await self._nc.jetstream().get_last_msg(
                DELTAS_STREAM, delta_subject(self._run_id)
            )
        except Exception:  # none published (NotFoundError), or NATS trouble: nothing to wait for
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_SECONDS
        while self._stream_seq < int(last.seq or 0):
            left = deadline - loop.time()
            if left <= 0:
                log.warning("tokens late; sending the event on", extra={"run_id": self._run_id})
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def take(self, through_seq: int) -> list[TokenDelta]:
        """The buffered pieces that follow events up to `through_seq`, in order (removed)."""
        ready = [d for d in self._buffer if d.seq <= through_seq]
        if ready:
            self._buffer = [d for d in self._buffer if d.seq > through_seq]
            last = ready[-1]
            self._after = max(self._after, (last.seq, last.n))
        return ready
