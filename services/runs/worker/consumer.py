"""The JetStream side of the worker: a durable pull consumer feeding the executor.

Jobs (`weft.jobs.run`, `{"run_id": ...}`) are acked only after the executor returned,
i.e. after the run's state is durable in Postgres. A job that fails transiently is
redelivered with a delay; past `max_deliver` it is dropped and the recovery loop picks
the run up again from its state in the database.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from services.runs.worker.executor import Executor, Outcome
from weftcore import tracing
from weftcore.context import request_id_var
from weftcore.nats import JOBS_STREAM, JOBS_SUBJECT

log = logging.getLogger(__name__)

DURABLE = "runs-worker"


@dataclass(frozen=True)
class ConsumerSettings:
    # Jobs a worker process holds at once. Template-only runs among them are computed
    # together, several per transaction; the executor caps the others separately.
    jobs_in_flight: int = 128
    ack_wait_seconds: float = 30.0
    max_deliver: int = 20
    retry_delay_seconds: float = 2.0
    fetch_timeout_seconds: float = 2.0


def consumer_config(settings: ConsumerSettings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=DURABLE,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_seconds,
        max_deliver=settings.max_deliver,
        max_ack_pending=10_000,
        filter_subject=JOBS_SUBJECT,
    )


@dataclass(frozen=True)
class Job:
    run_id: str
    request_id: str  # of the request that queued it; "-" when it carries none (recovery)


def job_of(msg: Msg) -> Job | None:
    """The job a message carries; None for a malformed one."""
    try:
        doc = json.loads(msg.data)
        run_id, request_id = doc["run_id"], doc.get("request_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(run_id, str) or not run_id:
        return None
    return Job(run_id, request_id if isinstance(request_id, str) and request_id else "-")


class JobConsumer:
    """Fetches jobs while slots are free; each job runs in its own task."""

    def __init__(
        self, js: JetStreamContext, executor: Executor, settings: ConsumerSettings
    ) -> None:
        self.js = js
        self.executor = executor
        self.settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Fetch and dispatch until stop() is called; NATS outages are waited out."""
        sub = None
        while not self._stop.is_set():
            free = min(
                self.settings.jobs_in_flight - len(self._tasks), self.executor.stepwise_room()
            )
            if free <= 0:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                if sub is None:
                    sub = await self.js.pull_subscribe(
                        JOBS_SUBJECT,
                        durable=DURABLE,
                        stream=JOBS_STREAM,
                        config=consumer_config(self.settings),
                    )
                msgs = await sub.fetch(free, timeout=self.settings.fetch_timeout_seconds)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("fetching jobs failed; retrying", exc_info=True)
                sub = None
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                if self._stop.is_set():
                    await _settle(msg.nak())  # not started: let another worker have it
                    continue
                task = asyncio.create_task(self.handle(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def handle(self, msg: Msg) -> None:
        """Execute one delivered job and settle it (ack, nak with backoff, or term)."""
        job = job_of(msg)
        if job is None:
            log.error(
                "malformed job dropped", extra={"data": msg.data[:200].decode("utf-8", "replace")}
            )
            await _settle(msg.term())
            return
        # This task's own context: every line it logs carries the queuing request's id.
        request_id_var.set(job.request_id)
        try:
            with tracing.consumer_span("run job", msg.headers):
                outcome = await self.executor.execute(job.run_id, msg.in_progress)
        except Exception:
            log.exception("job failed unexpectedly", extra={"run_id": job.run_id})
            outcome = Outcome.RETRY
        await self._settle_outcome(msg, job.run_id, outcome)

    async def _settle_outcome(self, msg: Msg, run_id: str, outcome: Outcome) -> None:
        if outcome is Outcome.DONE:
            await _settle(msg.ack())
        elif outcome is Outcome.RELEASED:
            await _settle(msg.nak())
        else:
            delivered = msg.metadata.num_delivered or 1
            if delivered >= self.settings.max_deliver:
                log.error("job gave up; recovery will retry the run", extra={"run_id": run_id})
                await _settle(msg.term())
            else:
                delay = min(60.0, self.settings.retry_delay_seconds * 2 ** (delivered - 1))
                await _settle(msg.nak(delay=delay))

    def stop(self) -> None:
        """Stop fetching; in-flight jobs continue (see drain)."""
        self._stop.set()

    async def drain(self, grace_seconds: float) -> None:
        """Let in-flight jobs finish their current stage and release, within the grace."""
        self.executor.stopping.set()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "jobs cut off at shutdown; they will be redelivered", extra={"count": len(pending)}
            )
            await asyncio.gather(*pending, return_exceptions=True)


async def _settle(call: Awaitable[None]) -> None:
    try:
        await call
    except Exception:  # NATS down: the job is redelivered after ack_wait, which is safe
        log.warning("could not settle a job with NATS", exc_info=True)
