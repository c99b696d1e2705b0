"""Pure runs (only template stages, no attachments) executed whole, in shared transactions.

Such a run has no outside effect, so nothing is lost if its transaction rolls back: a
pending run is locked, computed by the executor's plan and written completed, with the
rows and events of the step-by-step path (run.started, stage.started/completed per
stage, run.completed), in one statement. Jobs that arrive while one transaction runs
share the next one: under load a handful of round trips carries tens of runs.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.runs.domain.snapshot import run_snapshot
from services.runs.store.events import billing_copy, event_json, webhook_url_for
from services.runs.worker.model import PurePlan, RunRecord
from weftcore.batching import Batcher
from weftcore.events import RUN_COMPLETED, RUN_STARTED, STAGE_COMPLETED, STAGE_STARTED, RunEvent
from weftcore.ids import iso, new_id
from weftcore.nats import event_subject

log = logging.getLogger(__name__)

MAX_BATCH = 128

Plan = Callable[[RunRecord], Awaitable[PurePlan | None]]
Definitions = Callable[[asyncpg.Connection, str, int], Awaitable[dict[str, Any]]]

# Row locks in id order, so two workers' batches never wait on each other in a cycle.
# By id alone (the caller keeps the pending ones): with `status = 'pending'` here the
# planner also scans the status index, whose 'pending' entries of every run finished
# since the last vacuum are dead, a cost that grew with every run under load.
_LOCK = """
SELECT *, now() AS db_now FROM runs
WHERE id = ANY($1::text[])
ORDER BY id
FOR UPDATE
"""
# The runs completed, their stage rows, their events, the events' outbox rows (in event
# order, with billing's copies) and webhook deliveries, in one statement. $1 is the
# transaction's now().
_WRITE = """
WITH run AS (
    UPDATE runs r SET status = 'completed', result = (u.result)::jsonb, error = NULL,
           started_at = $1, completed_at = $1, heartbeat_at = $1, updated_at = $1,
           worker_id = NULL, human_input_request = NULL, cost_micros = u.cost,
           next_event_seq = u.next_seq
    FROM unnest($2::text[], $3::text[], $4::bigint[], $5::int[]) AS u (id, result, cost, next_seq)
    WHERE r.id = u.id AND r.id = ANY($2::text[])  -- the index, however the join is planned
), stages AS (
    INSERT INTO stage_results (run_id, stage_index, stage_id, stage_type, status, output,
                               duration_ms, started_at, completed_at)
    SELECT run_id, i, stage_id, stage_type, 'completed', (output)::jsonb, duration, $1, $1
    FROM unnest($6::text[], $7::int[], $8::text[], $9::text[], $10::text[], $11::int[])
         AS s (run_id, i, stage_id, stage_type, output, duration)
), events AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT run_id, seq, event_id, type, stage, (payload)::json, $1
    FROM unnest($12::text[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[])
         AS e (run_id, seq, event_id, type, stage, payload)
), hooks AS (  -- the runs with a webhook_url: their run.completed delivery
    INSERT INTO webhook_deliveries (id, run_id, account_id, event_type, url, created_at)
    SELECT event_id, run_id, account_id, type, url, $1
    FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::text[])
         AS h (event_id, run_id, account_id, type, url)
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO outbox (subject, msg_id, payload)
SELECT subject, msg_id, convert_to(payload, 'UTF8')
FROM unnest($18::text[], $19::text[], $20::text[]) WITH ORDINALITY
     AS o (subject, msg_id, payload, n)
ORDER BY n
"""


@dataclass(frozen=True)
class _Job:
    run_id: str
    plan: Plan


class PureRunBatcher:
    """`run(run_id, plan)`: True when the run was pending and pure and is now completed;
    False when it is not for this path (the caller takes the step-by-step one). One
    transaction at a time, carrying every job that arrived meanwhile."""

    def __init__(
        self, pool: asyncpg.Pool, definitions: Definitions, max_batch: int = MAX_BATCH
    ) -> None:
        self._pool = pool
        self._definitions = definitions
        self._batcher: Batcher[_Job, bool] = Batcher(
            self._execute, max_batch=max_batch, max_in_flight=1
        )

    async def run(self, run_id: str, plan: Plan) -> bool:
        return await self._batcher.call(_Job(run_id, plan))

    async def _execute(self, batch: list[_Job]) -> list[bool | BaseException]:
        try:
            return list(await self._transaction(batch))
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("pure runs batch failed; one by one", extra={"error": repr(exc)})
            return [(await self._execute([job]))[0] for job in batch]

    async def _transaction(self, batch: list[_Job]) -> list[bool]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_LOCK, sorted({job.run_id for job in batch}))
            pending = {row["id"]: row for row in rows if row["status"] == "pending"}
            outcomes: list[bool] = []
            written: list[tuple[Mapping[str, Any], list[dict[str, Any]], PurePlan]] = []
            for job in batch:
                # pop: a second job for the same run in this batch takes the long way,
                # which finds it completed.
                row = pending.pop(job.run_id, None)
                planned = None
                record = None
                if row is not None:
                    try:
                        definition = await self._definitions(
                            conn, row["workflow_id"], row["workflow_version"]
                        )
                        record = RunRecord.from_row(row, definition, first_start=True)
                        planned = await job.plan(record)
                    except Exception:
                        # This run's own problem: the step-by-step path reports it for
                        # this run alone instead of failing the others here.
                        log.exception("pure run not planned", extra={"run_id": job.run_id})
                if planned is None or record is None or row is None:
                    outcomes.append(False)
                    continue
                written.append((row, record.stages, planned))
                outcomes.append(True)
            if written:
                await conn.execute(_WRITE, written[0][0]["db_now"], *_columns(written))
        return outcomes


def _json(value: Any) -> str | None:
    """jsonb as text; None stays SQL NULL, as the step-by-step path stores it."""
    return None if value is None else json.dumps(value)


def events_of(
    row: Mapping[str, Any], stages: list[dict[str, Any]], planned: PurePlan
) -> list[RunEvent]:
    """The events of a pure run that started and completed at the transaction's now():
    run.started, stage.started and stage.completed per stage, run.completed."""
    now = row["db_now"]
    run_id = str(row["id"])
    running = {**row, "status": "running", "started_at": now}
    events: list[RunEvent] = []

    def add(type: str, stage: str | None, run_row: Mapping[str, Any], rows: list[Any]) -> None:
        snapshot = run_snapshot(run_row, rows)
        seq = int(row["next_event_seq"]) + len(events)
        events.append(RunEvent(new_id("evt"), type, run_id, seq, iso(now), snapshot, stage))

    add(RUN_STARTED, None, running, [])
    done: list[dict[str, Any]] = []
    for index, (stage, result) in enumerate(zip(stages, planned.stages, strict=True)):
        stage_id = str(stage["id"])
        stage_row: dict[str, Any] = {
            "stage_index": index,
            "stage_id": stage_id,
            "stage_type": str(stage["type"]),
            "status": "running",
            "model": result.model,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cost_micros": result.cost_micros,
            "duration_ms": result.duration_ms,
        }
        add(STAGE_STARTED, stage_id, running, [*done, stage_row])
        done.append({**stage_row, "status": "completed"})
        add(STAGE_COMPLETED, stage_id, running, done)
    final = {
        **running,
        "status": "completed",
        "result": planned.result,
        "error": None,
        "completed_at": now,
        "cost_micros": sum(result.cost_micros for result in planned.stages),
    }
    add(RUN_COMPLETED, None, final, done)
    return events


def _columns(
    written: list[tuple[Mapping[str, Any], list[dict[str, Any]], PurePlan]],
) -> list[list[Any]]:
    """_WRITE's arrays ($2..$25): runs, stage rows, events, outbox rows, webhook
    deliveries."""
    runs: list[list[Any]] = [[], [], [], []]
    stage_rows: list[list[Any]] = [[], [], [], [], [], []]
    event_rows: list[list[Any]] = [[], [], [], [], [], []]
    outbox: list[list[str]] = [[], [], []]
    hooks: list[list[str]] = [[], [], [], [], []]
    for row, stages, planned in written:
        run_id = str(row["id"])
        events = events_of(row, stages, planned)
        for column, value in zip(
            runs,
            (
                run_id,
                _json(planned.result),
                sum(r.cost_micros for r in planned.stages),
                int(row["next_event_seq"]) + len(events),
            ),
            strict=True,
        ):
            column.append(value)
        for index, (stage, result) in enumerate(zip(stages, planned.stages, strict=True)):
            values = (
                run_id,
                index,
                str(stage["id"]),
                str(stage["type"]),
                _json(result.output),
                result.duration_ms,
            )
            for column, value in zip(stage_rows, values, strict=True):
                column.append(value)
        for event in events:
            payload = event_json(event)
            event_values = (run_id, event.seq, event.id, event.type, event.stage, payload)
            for column, value in zip(event_rows, event_values, strict=True):
                column.append(value)
            subjects = [event_subject(run_id, event.type)]
            billing = billing_copy(run_id, event.type, row["holds_reservation"])
            if billing is not None:
                subjects.append(billing)
            for subject in subjects:
                for column, value in zip(outbox, (subject, event.id, payload), strict=True):
                    column.append(value)
            url = webhook_url_for(event.type, row["webhook_url"])
            if url is not None:
                hook = (event.id, run_id, str(row["account_id"]), event.type, url)
                for column, value in zip(hooks, hook, strict=True):
                    column.append(value)
    return [*runs, *stage_rows, *event_rows, *outbox, *hooks]
