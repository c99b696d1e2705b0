"""Recording run events and jobs inside the caller's transaction (the outbox pattern).

Nothing here talks to NATS: rows land in `run_events` and `outbox` (and in
`webhook_deliveries` for a run with a webhook_url) in the same transaction as the state
change they describe, and the relay (services/runs/delivery/outbox.py) publishes them. So an
event exists if and only if its state change committed.
"""

import json
from typing import Any

import asyncpg

from services.runs.domain.snapshot import run_snapshot
from weftcore import jsontext
from weftcore.context import request_id_var
from weftcore.events import BILLING_EVENTS, RUN_CREATED, WEBHOOK_EVENTS, RunEvent
from weftcore.ids import iso, new_id, utcnow
from weftcore.nats import JOBS_SUBJECT, billing_subject, event_subject

_NEXT_SEQ = """
UPDATE runs SET next_event_seq = next_event_seq + 1, updated_at = now()
WHERE id = $1
RETURNING *, coalesce(
    (SELECT json_agg(s) FROM stage_results s WHERE s.run_id = $1), '[]'::json
) AS stage_rows
"""
_INSERT_EVENT = """
WITH event AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    VALUES ($1, $2, $3, $4, $5, ($6::text)::json, $7)
), hook AS (  -- $11: the run's webhook_url if this event is delivered there, else NULL
    INSERT INTO webhook_deliveries (id, run_id, account_id, event_type, url, created_at)
    SELECT $3, $1, $10, $4, $11, $7 WHERE $11::text IS NOT NULL
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO outbox (subject, msg_id, payload)
SELECT v.subject, $3, convert_to($6::text, 'UTF8')
FROM (VALUES (1, $8::text), (2, $9::text)) AS v (k, subject)  -- $9: billing's copy or NULL
WHERE v.subject IS NOT NULL
ORDER BY v.k
"""
_INSERT_OUTBOX = "INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3)"


def billing_copy(run_id: str, event_type: str, holds_reservation: bool) -> str | None:
    """The subject of billing's copy of the event, or None when billing needs none."""
    if holds_reservation and event_type in BILLING_EVENTS:
        return billing_subject(run_id, event_type)
    return None


def webhook_url_for(event_type: str, webhook_url: str | None) -> str | None:
    """Where the event is POSTed (a delivery queued with it), or None."""
    return webhook_url if webhook_url and event_type in WEBHOOK_EVENTS else None


def event_json(event: RunEvent) -> str:
    """The event as published (RunEvent.to_json's document, without a deep copy)."""
    doc = {
        "id": event.id,
        "type": event.type,
        "run_id": event.run_id,
        "seq": event.seq,
        "created_at": event.created_at,
        "run": event.run,
        "stage": event.stage,
    }
    return jsontext.dumps(doc)


async def record_event(
    conn: asyncpg.Connection, run_id: str, type: str, stage: str | None = None
) -> RunEvent:
    """Append event `type` for the run (as it is now in this transaction) and queue it
    for JetStream (and its webhook, if the run has one).

    Call it after the state change, inside the same transaction. Locks the run row.
    """
    # Two round trips: lock + bump the sequence (reading the run and its stages), then
    # the event and its outbox row.
    row = await conn.fetchrow(_NEXT_SEQ, run_id)
    if row is None:
        raise LookupError(f"run {run_id} does not exist")
    now = utcnow()
    event = RunEvent(
        id=new_id("evt"),
        type=type,
        run_id=run_id,
        seq=int(row["next_event_seq"]) - 1,
        created_at=iso(now),
        run=run_snapshot(row, row["stage_rows"]),
        stage=stage,
    )
    await conn.execute(
        _INSERT_EVENT,
        run_id,
        event.seq,
        event.id,
        type,
        stage,
        event_json(event),
        now,
        event_subject(run_id, type),
        billing_copy(run_id, type, row["holds_reservation"]),
        row["account_id"],
        webhook_url_for(type, row["webhook_url"]),
    )
    return event


def job_payload(run_id: str) -> bytes:
    """A job for the workers: the run, and the id of the request that queued it (the
    worker logs with it, so one request's lines can be followed into the worker)."""
    job = {"run_id": run_id, "request_id": request_id_var.get()}
    return json.dumps(job, separators=(",", ":")).encode()


async def enqueue_job(conn: asyncpg.Connection, run_id: str, msg_id: str | None = None) -> None:
    """Queue a job for the workers to execute (or resume) the run.

    `msg_id` de-duplicates on JetStream; by default each call is a distinct job (a run
    resumed after human input needs a new one).
    """
    payload = job_payload(run_id)
    await conn.execute(_INSERT_OUTBOX, JOBS_SUBJECT, msg_id or new_id("evt"), payload)


# A new run, its run.created event and outbox rows (the event, billing's copy, the first
# job), only if the rate take ($21..$25, see services/runs/store/ratelimit.py) took one;
# answers the take's row. One statement: outside a transaction the account's rate lock
# lives only inside the server, never across a client round trip.
_INSERT_CREATED_TAKING = """
WITH take AS MATERIALIZED (
    SELECT n, oldest, took FROM rate_take($21::int, $22::text, $23::bigint, $24::bigint,
                                          $25::bigint)
), run AS (
    INSERT INTO runs (id, workflow_id, workflow_version, user_id, team_id, account_id,
                      input_text, params, attachment_ids, webhook_url, created_at, updated_at,
                      next_event_seq, holds_reservation)
    SELECT $1::text, $2::text, $3::int, $4::text, $5::text, $6::text, $7::text, $8::jsonb,
           $9::text[], $10::text, $11::timestamptz, $11::timestamptz, 2, $19::boolean
    FROM take WHERE took = 1
), event AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT $1::text, 1, $12::text, $13::text, NULL, ($14::text)::json, $11::timestamptz
    FROM take WHERE took = 1
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT v.subject, v.msg_id, v.payload
    FROM take, (VALUES (1, $15::text, $12::text, convert_to($14::text, 'UTF8')),
                       (2, $20::text, $12::text, convert_to($14::text, 'UTF8')),
                       (3, $16::text, $17::text, $18::bytea)) AS v (k, subject, msg_id, payload)
    WHERE take.took = 1 AND v.subject IS NOT NULL
    ORDER BY v.k
)
SELECT n, oldest, took FROM take
"""


def created_run(run: dict[str, Any]) -> tuple[RunEvent, tuple[Any, ...]]:
    """A new `pending` run's `run.created` event, and the arguments $1..$20 of
    _INSERT_CREATED_TAKING (the run, its event and its first job). `run` holds the runs columns
    of NewRun."""
    now = utcnow()
    row = {
        **run,
        "status": "pending",
        "result": None,
        "error": None,
        "human_input_request": None,
        "cost_micros": 0,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
    }
    event = RunEvent(
        id=new_id("evt"),
        type=RUN_CREATED,
        run_id=run["id"],
        seq=1,
        created_at=iso(now),
        run=run_snapshot(row, []),
    )
    job = job_payload(run["id"])
    args = (
        run["id"],
        run["workflow_id"],
        run["workflow_version"],
        run["user_id"],
        run["team_id"],
        run["account_id"],
        run["input_text"],
        run["params"],
        run["attachment_ids"],
        run["webhook_url"],
        now,
        event.id,
        RUN_CREATED,
        event_json(event),
        event_subject(run["id"], RUN_CREATED),
        JOBS_SUBJECT,
        f"job-{run['id']}-0",
        job,
        run["holds_reservation"],
        billing_copy(run["id"], RUN_CREATED, run["holds_reservation"]),
    )
    return event, args


async def insert_created_run(
    conn: asyncpg.Connection, run: dict[str, Any], rate_take: tuple[Any, ...]
) -> tuple[RunEvent, asyncpg.Record]:
    """Take the rate limit, then insert a new `pending` run with its `run.created` event
    and its first job, in one statement (the hot path of CreateRun). `run` holds the
    runs columns of NewRun, `rate_take` the arguments of services.runs.store.ratelimit.TAKE_SQL.
    Nothing is inserted when the take took nothing; the take's row (n, oldest, took) is
    answered with the event."""
    event, args = created_run(run)
    return event, await insert_created_taking(conn, args, rate_take)


async def insert_created_taking(
    conn: asyncpg.Connection, args: tuple[Any, ...], rate_take: tuple[Any, ...]
) -> asyncpg.Record:
    """The rate take, then (if it took) the run of `created_run`'s `args`; the take's row."""
    row = await conn.fetchrow(_INSERT_CREATED_TAKING, *args, *rate_take)
    assert row is not None
    return row
