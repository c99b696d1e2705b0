"""The one writer of runs: persists changes (domain/transitions.py) in one statement.

A statement carries any number of changes, of any runs: new runs (with their rate take:
a creation over its account's limit writes nothing) and changes of existing ones, each
applied only if its row is still at the version it was computed from. With each applied
change go its stage rows, its events, their outbox rows (JetStream after the commit,
services/runs/delivery/outbox.py) and webhook deliveries. One statement is its own
transaction, so an event exists if and only if its state change committed, and the
account's rate lock lives only inside the server, never across a round trip.

`RunWriter` shares statements between concurrent callers (group commit): under load one
round trip and one commit carry tens of changes, for the API's creations and the
workers' stage results alike.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.runs.domain.transitions import Change, event_json
from weftcore import jsontext
from weftcore.batching import Batcher

log = logging.getLogger(__name__)

MAX_BATCH = 256

# A creation's rate take: the arguments of `rate_take` (services.runs.store.ratelimit
# Ticket.args(): lock class, account, bucket, limit, window).
RateTake = tuple[int, str, int, int, int]
# Keeps the concurrency limits' advisory locks apart from others' (ratelimit's is 0x5EF70002).
SLOT_LOCK_CLASS = 0x5EF7_0003

# Each input table arrives as ONE JSON document (an array of row objects, read by
# json_to_recordset): a statement's fixed cost then stays small for a batch of one, where
# an array parameter per column cost ~100 us of encoding per statement.
_WRITE = """
WITH input AS MATERIALIZED (
    SELECT * FROM json_to_recordset($1::text::json) AS i (
        ord int, id text, expected_version bigint, workflow_id text, workflow_version int,
        user_id text, team_id text, account_id text, input_text text, params jsonb,
        attachment_ids text[], webhook_url text, holds_reservation boolean,
        created_at timestamptz, status text, result jsonb, error jsonb,
        human_input_request jsonb, human_inputs jsonb, cost_micros bigint, worker_id text,
        started_at timestamptz, completed_at timestamptz, deadline_at timestamptz, version bigint,
        next_event_seq int,
        rate_account text, bucket bigint, lim bigint, rerun_of text, timeout_seconds int,
        priority int, concurrency_limit int, account_concurrency_limit int,
        queued_at timestamptz, takes_slot boolean)
), take AS MATERIALIZED (  -- accounts in sorted order: two statements never wait in a cycle
    SELECT i.ord, t.n, t.oldest, t.took
    FROM (SELECT * FROM input WHERE rate_account IS NOT NULL ORDER BY rate_account, ord) AS i
    CROSS JOIN LATERAL rate_take($2::int, i.rate_account, i.bucket, i.lim, $3::bigint) AS t
), admitted AS MATERIALIZED (  -- the creations the rate limit let through
    SELECT i.* FROM input i LEFT JOIN take USING (ord)
    WHERE i.expected_version IS NULL AND coalesce(take.took, 1) = 1
), created AS (  -- runs in WITH: executed whether or not anything reads it
    INSERT INTO runs (id, workflow_id, workflow_version, user_id, team_id, account_id,
                      input_text, params, attachment_ids, webhook_url, holds_reservation,
                      created_at, updated_at, status, human_inputs, next_event_seq, version,
                      rerun_of, timeout_seconds, priority, concurrency_limit,
                      account_concurrency_limit)
    SELECT i.id, i.workflow_id, i.workflow_version, i.user_id, i.team_id, i.account_id,
           i.input_text, i.params, i.attachment_ids, i.webhook_url, i.holds_reservation,
           i.created_at, i.created_at, i.status, i.human_inputs, i.next_event_seq, i.version,
           i.rerun_of, i.timeout_seconds, i.priority, i.concurrency_limit,
           i.account_concurrency_limit
    FROM admitted i
), slot_locks AS MATERIALIZED (  -- the limits' scopes of the runs that start
    SELECT slot_lock($9::int, array_agg(s)) AS n
    FROM input i CROSS JOIN LATERAL unnest(ARRAY['w:' || i.workflow_id, 'a:' || i.account_id]) s
    WHERE i.takes_slot
), slot_refused AS MATERIALIZED (  -- read after the locks: exact
    SELECT s.ord FROM (
        SELECT i.*, row_number() OVER (PARTITION BY i.workflow_id ORDER BY i.ord) AS wf_rank,
               row_number() OVER (PARTITION BY i.account_id ORDER BY i.ord) AS acct_rank
        FROM input i, slot_locks WHERE i.takes_slot AND slot_locks.n IS NOT NULL) AS s
    WHERE NOT slot_free(s.id, s.priority, s.created_at,
                        s.workflow_id, s.concurrency_limit, s.wf_rank::int,
                        s.account_id, s.account_concurrency_limit, s.acct_rank::int)
), updated AS (
    UPDATE runs r SET status = i.status, result = i.result, error = i.error,
           human_input_request = i.human_input_request, human_inputs = i.human_inputs,
           cost_micros = i.cost_micros, worker_id = i.worker_id, started_at = i.started_at,
           completed_at = i.completed_at, deadline_at = i.deadline_at, version = i.version,
           queued_at = i.queued_at,
           next_event_seq = i.next_event_seq, updated_at = now(),
           -- a write of a running run is its worker's sign of life
           heartbeat_at = CASE WHEN i.status = 'running' THEN now() END
    FROM input i
    WHERE r.id = i.id AND r.version = i.expected_version
      AND r.id = ANY($8::text[])  -- the index, however the join is planned
      AND i.ord NOT IN (SELECT ord FROM slot_refused)
    RETURNING i.ord
), applied AS (
    SELECT ord FROM admitted  -- inserted, or the statement failed
    UNION ALL
    SELECT ord FROM updated
), stage_input AS MATERIALIZED (
    SELECT * FROM json_to_recordset($4::text::json) AS s (
        ord int, run_id text, stage_index int, stage_id text, stage_type text, status text,
        output jsonb, model text, input_tokens bigint, output_tokens bigint,
        cost_micros bigint, duration_ms int, started_at timestamptz,
        completed_at timestamptz, added boolean)
    WHERE s.ord IN (SELECT ord FROM applied)
), stages_added AS (  -- the run's state had no such row: nobody else writes one (the fence)
    INSERT INTO stage_results (run_id, stage_index, stage_id, stage_type, status, output,
                               model, input_tokens, output_tokens, cost_micros, duration_ms,
                               started_at, completed_at)
    SELECT run_id, stage_index, stage_id, stage_type, status, output, model, input_tokens,
           output_tokens, cost_micros, duration_ms, started_at, completed_at
    FROM stage_input WHERE added
), stages_changed AS (
    UPDATE stage_results t SET status = s.status, output = s.output, model = s.model,
           input_tokens = s.input_tokens, output_tokens = s.output_tokens,
           cost_micros = s.cost_micros, duration_ms = s.duration_ms,
           started_at = s.started_at, completed_at = s.completed_at
    FROM stage_input s
    WHERE NOT s.added AND t.run_id = s.run_id AND t.stage_id = s.stage_id
), event_input AS MATERIALIZED (
    SELECT * FROM json_to_recordset($5::text::json) AS e (
        n int, ord int, run_id text, seq int, event_id text, type text, stage text,
        payload text, created_at timestamptz)
    WHERE e.ord IN (SELECT ord FROM applied)
), events AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT run_id, seq, event_id, type, stage, payload::json, created_at FROM event_input
), hooks AS (
    INSERT INTO webhook_deliveries (id, run_id, account_id, event_type, url, created_at,
                                    traceparent)
    SELECT h.event_id, h.run_id, h.account_id, h.type, h.url, now(), nullif(h.trace, '')
    FROM json_to_recordset($6::text::json) AS h (
        ord int, event_id text, run_id text, account_id text, type text, url text,
        trace text)
    WHERE h.ord IN (SELECT ord FROM applied)
    ON CONFLICT (id) DO NOTHING
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload, traceparent)
    -- an event's rows carry its payload from the event (numbered n), not sent twice
    SELECT o.subject, o.msg_id, convert_to(coalesce(o.payload, e.payload), 'UTF8'),
           nullif(o.trace, '')
    FROM json_to_recordset($7::text::json) AS o (
        n int, ord int, subject text, msg_id text, payload text, event int, trace text)
    LEFT JOIN event_input e ON e.n = o.event
    WHERE o.ord IN (SELECT ord FROM applied)
    ORDER BY o.n  -- ids in publish order
)
SELECT i.ord, i.ord IN (SELECT ord FROM applied) AS applied, take.n, take.oldest, take.took,
       i.ord IN (SELECT ord FROM slot_refused) AS no_slot
FROM input i LEFT JOIN take USING (ord)
ORDER BY i.ord
"""


@dataclass(frozen=True)
class Written:
    """What became of one change: whether it was applied (False: its row had moved on,
    or its creation's rate take took nothing), and for a creation its take's row
    (n, oldest, took; services.runs.store.ratelimit.PgRateLimiter.settle reads it)."""

    applied: bool
    take: asyncpg.Record | None = None
    no_slot: bool = False  # refused: a concurrency limit of the run had no slot free


def _ts(value: datetime | None) -> str | None:
    # Text, not datetime: the JSON stays encodable on jsontext's standard-library path
    # too (taken for integers beyond 64 bits, which a run's result may hold).
    return None if value is None else value.isoformat()


def statement_arguments(changes: Sequence[Change], takes: Sequence[RateTake | None]) -> list[Any]:
    """_WRITE's arguments: each input table as a JSON array of row objects, the rate
    take's constants, and the ids of the runs changed (not created)."""
    runs: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    updated: list[str] = []
    constants: tuple[Any, Any] = (0, 0)
    for ord, (change, take) in enumerate(zip(changes, takes, strict=True)):
        run = change.run
        row: dict[str, Any] = {
            "ord": ord,
            "id": run.id,
            "expected_version": change.expected_version,
            "status": run.status,
            "result": run.result,
            "error": run.error,
            "human_input_request": run.human_input_request,
            "human_inputs": run.human_inputs,
            "cost_micros": run.cost_micros,
            "worker_id": run.worker_id,
            "started_at": _ts(run.started_at),
            "completed_at": _ts(run.completed_at),
            "deadline_at": _ts(run.deadline_at),
            "queued_at": _ts(run.queued_at),
            "version": run.version,
            "next_event_seq": run.next_event_seq,
        }
        if change.expected_version is None:
            # The columns a run is created with go only with its creation (never change).
            row.update(
                workflow_id=run.workflow_id,
                workflow_version=run.workflow_version,
                user_id=run.user_id,
                team_id=run.team_id,
                account_id=run.account_id,
                input_text=run.input_text,
                params=run.params,
                attachment_ids=run.attachment_ids,
                webhook_url=run.webhook_url,
                holds_reservation=run.holds_reservation,
                created_at=_ts(run.created_at),
                rerun_of=run.rerun_of,
                timeout_seconds=run.timeout_seconds,
            )
        else:
            updated.append(run.id)
        if change.takes_slot or change.expected_version is None:
            row.update(
                workflow_id=run.workflow_id,
                account_id=run.account_id,
                created_at=_ts(run.created_at),
                priority=run.priority,
                concurrency_limit=run.concurrency_limit,
                account_concurrency_limit=run.account_concurrency_limit,
                takes_slot=change.takes_slot,
            )
        if take is not None:
            lock_class, account, bucket, limit, window = take
            row.update(rate_account=account, bucket=bucket, lim=limit)
            constants = (lock_class, window)
        runs.append(row)
        stages.extend(
            {
                "ord": ord,
                "run_id": run.id,
                "stage_index": s.stage_index,
                "stage_id": s.stage_id,
                "stage_type": s.stage_type,
                "status": s.status,
                "output": s.output,
                "model": s.model,
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cost_micros": s.cost_micros,
                "duration_ms": s.duration_ms,
                "started_at": _ts(s.started_at),
                "completed_at": _ts(s.completed_at),
                "added": s.stage_id in change.new_stages,
            }
            for s in change.stages
        )
        # Events are numbered across the statement; their outbox rows name that number.
        number = {e.id: len(events) + 1 + i for i, e in enumerate(change.events)}
        events.extend(
            {
                "n": number[e.id],
                "ord": ord,
                "run_id": run.id,
                "seq": e.seq,
                "event_id": e.id,
                "type": e.type,
                "stage": e.stage,
                "payload": event_json(e),
                "created_at": _ts(change.at),
            }
            for e in change.events
        )
        hooks.extend(
            {
                "ord": ord,
                "event_id": h.event_id,
                "run_id": run.id,
                "account_id": run.account_id,
                "type": h.event_type,
                "url": h.url,
                "trace": h.trace,
            }
            for h in change.webhooks
        )
        first = len(outbox) + 1  # extend() appends as it goes: count from before it
        outbox.extend(
            {
                "n": first + i,
                "ord": ord,
                "subject": m.subject,
                "msg_id": m.msg_id,
                "payload": None if m.payload is None else m.payload.decode(),
                "event": number.get(m.msg_id) if m.payload is None else None,
                "trace": m.trace,
            }
            for i, m in enumerate(change.outbox)
        )
    return [
        jsontext.dumps(runs),
        *constants,
        jsontext.dumps(stages),
        jsontext.dumps(events),
        jsontext.dumps(hooks),
        jsontext.dumps(outbox),
        updated,
        SLOT_LOCK_CLASS,
    ]


async def write(
    conn: asyncpg.Connection | asyncpg.Pool,
    changes: Sequence[Change],
    takes: Sequence[RateTake | None] | None = None,
) -> list[Written]:
    """Write `changes` (of distinct runs) in one statement; `takes`: each one's rate
    take (creations only), or None. One answer per change, in order."""
    takes = takes if takes is not None else [None] * len(changes)
    assert len({c.run.id for c in changes}) == len(changes), "one change per run and statement"
    rows = await conn.fetch(_WRITE, *statement_arguments(changes, takes))
    return [
        Written(row["applied"], row if take is not None else None, row["no_slot"])
        for row, take in zip(rows, takes, strict=True)
    ]


Item = tuple[Change, RateTake | None]


class RunWriter:
    """`write` shared between concurrent callers: one statement at a time, carrying
    every change that arrived meanwhile. If a statement fails for a reason one of its
    changes may cause, each is written alone, so one change's error is its own."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._batcher: Batcher[Item, Written] = Batcher(
            self._write, max_batch=max_batch, max_in_flight=1
        )

    async def write(self, change: Change, take: RateTake | None = None) -> Written:
        return await self._batcher.call((change, take))

    async def close(self) -> None:
        """Finish the statements under way and refuse new writes (Batcher.close)."""
        await self._batcher.close()

    async def _write(self, batch: list[Item]) -> list[Written | BaseException]:
        # Two changes of one run (two cancels, say; never from one worker, which runs a
        # run once at a time) go in successive statements: the second then meets the
        # first's version. Round k holds each run's k-th change of the batch.
        rounds: list[list[int]] = []
        seen: dict[str, int] = {}
        for position, (change, _) in enumerate(batch):
            k = seen.get(change.run.id, 0)
            seen[change.run.id] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(position)
        answers: list[Written | BaseException] = [Written(False)] * len(batch)
        for positions in rounds:
            written = await self._statement([batch[p] for p in positions])
            for position, answer in zip(positions, written, strict=True):
                answers[position] = answer
        return answers

    async def _statement(self, batch: list[Item]) -> list[Written | BaseException]:
        try:
            async with self._pool.acquire() as conn:
                return list(
                    await write(conn, [change for change, _ in batch], [t for _, t in batch])
                )
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("batched write failed; writing one by one", extra={"error": repr(exc)})
            return [(await self._statement([item]))[0] for item in batch]
