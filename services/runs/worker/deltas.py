"""Streamed tokens out of the worker: each piece of an LLM stage's answer is published
on the run's JetStream subject (`weft.deltas.<run_id>`, weftcore/nats.py) as it comes.

Published and acked one at a time, in order, before the stage's result is written: so
a watcher that sees the stage's next event in Postgres finds every piece of the stage
in the stream already (services/runs/domain/watch.py relies on it). A publish that
fails (NATS down) is dropped: tokens are a view of the run, never a condition of it;
the stage's output is stored whole when it completes.
"""

import json
import logging

from nats.js import JetStreamContext

from services.runs.worker.context import Delta
from weftcore.nats import delta_subject

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 2.0


def delta_payload(delta: Delta) -> bytes:
    """The message of one piece (services.runs.domain.watch reads it back)."""
    doc = {"seq": delta.seq, "n": delta.n, "stage": delta.stage, "text": delta.text}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class JetStreamDeltas:
    """context.DeltaSink over JetStream."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, delta: Delta) -> None:
        try:
            await self._js.publish(
                delta_subject(delta.run_id),
                delta_payload(delta),
                timeout=PUBLISH_TIMEOUT_SECONDS,
            )
        except Exception as exc:
            log.debug(
                "token not published", extra={"run_id": delta.run_id, "error": type(exc).__name__}
            )
