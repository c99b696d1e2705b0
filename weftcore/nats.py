"""NATS JetStream connection and the streams every service agrees on."""

import asyncio
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig

from weftcore.config import env_int
from weftcore.logs import error_text

log = logging.getLogger(__name__)

# Work queue: one message per run to execute (or resume); consumed by workers.
JOBS_STREAM = "WEFT_JOBS"
JOBS_SUBJECT = "weft.jobs.run"
# Lifecycle events of runs: `weft.runs.<run_id>.<event>`; kept for a day for SSE replay,
# billing capture and webhooks.
EVENTS_STREAM = "WEFT_RUNS"
EVENTS_SUBJECTS = "weft.runs.>"
# Billing's copy of the events that move money (run.created confirms a reservation, a
# terminal event captures it): `weft.billing.<run_id>.<event>`, published only for runs
# that hold a reservation, so billing never reads the many runs that cannot cost
# anything. A work queue: a copy is gone once billing acked it, and kept until then.
BILLING_STREAM = "WEFT_BILLING"
BILLING_SUBJECTS = "weft.billing.>"
# Streamed LLM tokens: `weft.deltas.<run_id>`, one message per piece of an answer as it
# is generated. Never in Postgres (a row per token would cost more than the run); kept
# here briefly so that a client reconnecting with Last-Event-ID resumes mid-stage.
DELTAS_STREAM = "WEFT_DELTAS"
DELTAS_SUBJECTS = "weft.deltas.>"
DELTAS_MAX_AGE_SECONDS = 15 * 60


def delta_subject(run_id: str) -> str:
    return f"weft.deltas.{run_id}"


def event_subject(run_id: str, event_type: str) -> str:
    return f"weft.runs.{run_id}.{event_type}"


def billing_subject(run_id: str, event_type: str) -> str:
    return f"weft.billing.{run_id}.{event_type}"


async def connect(url: str, name: str) -> Client:
    """Connect, reconnecting forever: NATS restarts must not kill a service. `url` may
    list several servers, comma-separated (a cluster's nodes)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": error_text(exc)})

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        [u.strip() for u in url.split(",") if u.strip()],  # a cluster: every node's URL
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def connect_retrying(
    url: str, name: str, attempts: int = 60, interval_seconds: float = 0.5
) -> Client:
    """`connect`, retrying for a while first: NATS restarting next to us must not stop
    a start. (Once connected, the client reconnects by itself.)"""
    for attempt in range(1, attempts + 1):
        try:
            return await connect(url, name)
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("nats not reachable yet", extra={"error": error_text(exc)})
            await asyncio.sleep(interval_seconds)
    raise AssertionError("unreachable")


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create or update the streams (idempotent; every service may call it at start).

    `replicas` defaults to WEFT_NATS_STREAM_REPLICAS (1): 3 on a 3-node NATS cluster, so
    losing a node loses no job or event."""
    if replicas is None:
        replicas = env_int("WEFT_NATS_STREAM_REPLICAS", 1)
    await _ensure(
        js,
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[JOBS_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            num_replicas=replicas,
        ),
    )
    await _ensure(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            max_age=24 * 3600,
            num_replicas=replicas,
        ),
    )
    await _ensure(
        js,
        StreamConfig(
            name=DELTAS_STREAM,
            subjects=[DELTAS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            max_age=DELTAS_MAX_AGE_SECONDS,
            duplicate_window=60,
            num_replicas=replicas,
        ),
    )
    await _ensure(
        js,
        StreamConfig(
            name=BILLING_STREAM,
            subjects=[BILLING_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            num_replicas=replicas,
        ),
    )


async def _ensure(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except Exception:
        await js.update_stream(config)
