"""Prometheus metrics of the runs process (served by weftcore.metrics.MetricsServer).

Runs are counted from the events the outbox relay has published (one place every
creation and every end passes through, whichever process wrote them): a row published
twice after a crash between JetStream's ack and the commit is counted twice.
"""

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from weftcore.events import RUN_CREATED, TERMINAL_EVENTS

log = logging.getLogger(__name__)

RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

RUNS_CREATED = Counter("weft_runs_created_total", "Runs created")
RUNS_FINISHED = Counter(
    "weft_runs_finished_total", "Runs that reached a terminal status", ["status"]
)
RUN_DURATION = Histogram(
    "weft_run_duration_seconds",
    "From a run's creation to its terminal status, by that status",
    ["status"],
    buckets=RUN_BUCKETS,
)
STAGE_DURATION = Histogram(
    "weft_stage_duration_seconds",
    "Time a stage took, by stage type (observed when its run finishes)",
    ["stage_type"],
    buckets=RUN_BUCKETS,
)
WEBHOOK_ATTEMPTS = Counter(
    "weft_webhook_attempts_total",
    "Webhook delivery attempts, by outcome: delivered, http_error, unreachable, refused",
    ["outcome"],
)
WEBHOOK_GAVE_UP = Counter(
    "weft_webhook_deliveries_failed_total", "Webhook deliveries given up (status failed)"
)

_EVENTS_PREFIX = "weft.runs."


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def observe_event(subject: str, payload: bytes) -> None:
    """Count one published outbox row (a no-op for jobs and billing's copies)."""
    if not subject.startswith(_EVENTS_PREFIX):
        return
    event_type = subject[len(_EVENTS_PREFIX) :].partition(".")[2]
    if event_type == RUN_CREATED:
        RUNS_CREATED.inc()
    elif event_type in TERMINAL_EVENTS:
        try:
            run = json.loads(payload)["run"]
        except (ValueError, KeyError, TypeError):
            return
        observe_finished(run)


def observe_finished(run: Mapping[str, Any]) -> None:
    status = str(run.get("status") or "unknown")
    RUNS_FINISHED.labels(status).inc()
    seconds = _seconds_between(run.get("created_at"), run.get("completed_at"))
    if seconds is not None and seconds >= 0:
        RUN_DURATION.labels(status).observe(seconds)
    for stage in run.get("cost_breakdown") or ():
        if isinstance(stage, Mapping) and stage.get("type"):
            STAGE_DURATION.labels(str(stage["type"])).observe(
                max(0, int(stage.get("duration_ms") or 0)) / 1000
            )


def observe_published(rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        observe_event(row["subject"], bytes(row["payload"]))


def webhook_outcome(status_code: int, permanent: bool) -> str:
    if 200 <= status_code < 300:
        return "delivered"
    if status_code:
        return "http_error"
    return "refused" if permanent else "unreachable"


IN_FLIGHT = Gauge(
    "weft_runs_in_flight", "Runs not yet finished nor waiting for input, by status", ["status"]
)
OLDEST_IN_FLIGHT = Gauge(
    "weft_runs_oldest_in_flight_seconds",
    "Age of the oldest run in that status (0 when there is none)",
    ["status"],
)
STALE_RUNNING = Gauge(
    "weft_runs_stale_running",
    "Running runs whose worker heartbeat is over 60 s old (recovery should take them)",
)
_IN_FLIGHT = """
SELECT status, count(*) AS n,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest,
       count(*) FILTER (WHERE heartbeat_at < now() - interval '60 seconds') AS stale
FROM runs WHERE status IN ('pending', 'running') GROUP BY status
"""


async def survey_once(pool: asyncpg.Pool) -> None:
    """Refresh the in-flight gauges (the `runs_status_heartbeat_idx` index finds them)."""
    try:
        rows = await pool.fetch(_IN_FLIGHT)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("runs survey failed", exc_info=True)
        return
    found = {row["status"]: row for row in rows}
    stale = 0
    for status in ("pending", "running"):
        row = found.get(status)
        IN_FLIGHT.labels(status).set(row["n"] if row else 0)
        OLDEST_IN_FLIGHT.labels(status).set(row["oldest"] if row else 0)
        if status == "running" and row:
            stale = row["stale"]
    STALE_RUNNING.set(stale)


async def survey_loop(pool: asyncpg.Pool, interval: float = 30.0) -> None:
    """`survey_once` until cancelled (a weftcore.background task)."""
    while True:
        await survey_once(pool)
        await asyncio.sleep(interval)
