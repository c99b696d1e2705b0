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

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.runs.domain.transitions import Change, event_json
from weftcore.batching import Batcher

log = logging.getLogger(__name__)

MAX_BATCH = 256

# A creation's rate take: the arguments of `rate_take` (services.runs.store.ratelimit
# Ticket.args(): lock class, account, bucket, limit, window).
RateTake = tuple[int, str, int, int, int]

_WRITE = """
WITH input AS MATERIALIZED (
    SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::boolean[], $14::timestamptz[],
                         $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
                         $20::bigint[], $21::text[], $22::timestamptz[], $23::timestamptz[],
                         $24::bigint[], $25::int[], $26::text[], $27::bigint[], $28::bigint[])
        AS i (ord, id, expected_version, workflow_id, workflow_version, user_id, team_id,
              account_id, input_text, params, attachment_ids, webhook_url, holds_reservation,
              created_at, status, result, error, human_input_request, human_inputs,
              cost_micros, worker_id, started_at, completed_at, version, next_event_seq,
              rate_account, bucket, lim)
), take AS MATERIALIZED (  -- accounts in sorted order: two statements never wait in a cycle
    SELECT i.ord, t.n, t.oldest, t.took
    FROM (SELECT * FROM input WHERE rate_account IS NOT NULL ORDER BY rate_account, ord) AS i
    CROSS JOIN LATERAL rate_take($29::int, i.rate_account, i.bucket, i.lim, $30::bigint) AS t
), admitted AS MATERIALIZED (  -- the creations the rate limit let through
    SELECT i.* FROM input i LEFT JOIN take USING (ord)
    WHERE i.expected_version IS NULL AND coalesce(take.took, 1) = 1
), created AS (  -- runs in WITH: executed whether or not anything reads it
    INSERT INTO runs (id, workflow_id, workflow_version, user_id, team_id, account_id,
                      input_text, params, attachment_ids, webhook_url, holds_reservation,
                      created_at, updated_at, status, human_inputs, next_event_seq, version)
    SELECT i.id, i.workflow_id, i.workflow_version, i.user_id, i.team_id, i.account_id,
           i.input_text, i.params::jsonb,
           ARRAY(SELECT jsonb_array_elements_text(i.attachment_ids::jsonb)), i.webhook_url,
           i.holds_reservation, i.created_at, i.created_at, i.status, i.human_inputs::jsonb,
           i.next_event_seq, i.version
    FROM admitted i
), updated AS (
    UPDATE runs r SET status = i.status, result = i.result::jsonb, error = i.error::jsonb,
           human_input_request = i.human_input_request::jsonb,
           human_inputs = i.human_inputs::jsonb, cost_micros = i.cost_micros,
           worker_id = i.worker_id, started_at = i.started_at, completed_at = i.completed_at,
           version = i.version, next_event_seq = i.next_event_seq, updated_at = now(),
           -- a write of a running run is its worker's sign of life
           heartbeat_at = CASE WHEN i.status = 'running' THEN now() END
    FROM input i
    WHERE r.id = i.id AND r.version = i.expected_version
      AND r.id = ANY($64::text[])  -- the index, however the join is planned
    RETURNING i.ord
), applied AS (
    SELECT ord FROM admitted  -- inserted, or the statement failed
    UNION ALL
    SELECT ord FROM updated
), stage_input AS MATERIALIZED (
    SELECT * FROM unnest($31::int[], $32::text[], $33::int[], $34::text[], $35::text[],
                         $36::text[], $37::text[], $38::text[], $39::bigint[], $40::bigint[],
                         $41::bigint[], $42::int[], $43::timestamptz[], $44::timestamptz[],
                         $63::boolean[])
        AS s (ord, run_id, stage_index, stage_id, stage_type, status, output, model,
              input_tokens, output_tokens, cost_micros, duration_ms, started_at,
              completed_at, added)
    WHERE s.ord IN (SELECT ord FROM applied)
), stages_added AS (  -- the run's state had no such row: nobody else writes one (the fence)
    INSERT INTO stage_results (run_id, stage_index, stage_id, stage_type, status, output,
                               model, input_tokens, output_tokens, cost_micros, duration_ms,
                               started_at, completed_at)
    SELECT run_id, stage_index, stage_id, stage_type, status, output::jsonb, model,
           input_tokens, output_tokens, cost_micros, duration_ms, started_at, completed_at
    FROM stage_input WHERE added
), stages_changed AS (
    UPDATE stage_results t SET status = s.status, output = s.output::jsonb, model = s.model,
           input_tokens = s.input_tokens, output_tokens = s.output_tokens,
           cost_micros = s.cost_micros, duration_ms = s.duration_ms,
           started_at = s.started_at, completed_at = s.completed_at
    FROM stage_input s
    WHERE NOT s.added AND t.run_id = s.run_id AND t.stage_id = s.stage_id
), events AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT e.run_id, e.seq, e.event_id, e.type, e.stage, e.payload::json, e.created_at
    FROM unnest($45::int[], $46::text[], $47::int[], $48::text[], $49::text[],
                $50::text[], $51::text[], $52::timestamptz[])
         AS e (ord, run_id, seq, event_id, type, stage, payload, created_at)
    WHERE e.ord IN (SELECT ord FROM applied)
), hooks AS (
    INSERT INTO webhook_deliveries (id, run_id, account_id, event_type, url, created_at)
    SELECT h.event_id, h.run_id, h.account_id, h.type, h.url, now()
    FROM unnest($53::int[], $54::text[], $55::text[], $56::text[], $57::text[], $58::text[])
         AS h (ord, event_id, run_id, account_id, type, url)
    WHERE h.ord IN (SELECT ord FROM applied)
    ON CONFLICT (id) DO NOTHING
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload)
    -- an event's rows carry its payload from the events' array ($51), not sent twice
    SELECT o.subject, o.msg_id, coalesce(o.payload, convert_to(($51::text[])[o.event], 'UTF8'))
    FROM unnest($59::int[], $60::text[], $61::text[], $62::bytea[], $65::int[])
         WITH ORDINALITY AS o (ord, subject, msg_id, payload, event, n)
    WHERE o.ord IN (SELECT ord FROM applied)
    ORDER BY o.n  -- ids in publish order
)
SELECT i.ord, i.ord IN (SELECT ord FROM applied) AS applied, take.n, take.oldest, take.took
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


def _json(value: Any) -> str | None:
    """jsonb as text; None stays SQL NULL."""
    return None if value is None else json.dumps(value)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one array per column (empty arrays when there are no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _arguments(changes: Sequence[Change], takes: Sequence[RateTake | None]) -> list[Any]:
    """_WRITE's arguments: one array per column of each input, and the take's constants."""
    runs: list[tuple[Any, ...]] = []
    stages: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    hooks: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    updated: list[str] = []
    constants: tuple[Any, Any] = (0, 0)
    for ord, (change, take) in enumerate(zip(changes, takes, strict=True)):
        run = change.run
        rate: tuple[Any, ...] = (None, None, None)
        if take is not None:
            lock_class, account, bucket, limit, window = take
            rate, constants = (account, bucket, limit), (lock_class, window)
        # The columns a run is created with go only with its creation (they never change).
        created: tuple[Any, ...] = (None,) * 11
        if change.expected_version is None:
            created = (
                run.workflow_id,
                run.workflow_version,
                run.user_id,
                run.team_id,
                run.account_id,
                run.input_text,
                json.dumps(run.params),
                json.dumps(run.attachment_ids),
                run.webhook_url,
                run.holds_reservation,
                run.created_at,
            )
        runs.append(
            (
                ord,
                run.id,
                change.expected_version,
                *created,
                run.status,
                _json(run.result),
                _json(run.error),
                _json(run.human_input_request),
                json.dumps(run.human_inputs),
                run.cost_micros,
                run.worker_id,
                run.started_at,
                run.completed_at,
                run.version,
                run.next_event_seq,
                *rate,
            )
        )
        stages.extend(
            (
                ord,
                run.id,
                s.stage_index,
                s.stage_id,
                s.stage_type,
                s.status,
                _json(s.output),
                s.model,
                s.input_tokens,
                s.output_tokens,
                s.cost_micros,
                s.duration_ms,
                s.started_at,
                s.completed_at,
                s.stage_id in change.new_stages,
            )
            for s in change.stages
        )
        events.extend(
            (ord, run.id, e.seq, e.id, e.type, e.stage, event_json(e), change.at)
            for e in change.events
        )
        hooks.extend(
            (ord, h.event_id, run.id, run.account_id, h.event_type, h.url) for h in change.webhooks
        )
        # An event's outbox rows name its position in the events' arrays (1-based).
        first = len(events) - len(change.events) + 1
        position = {e.id: first + i for i, e in enumerate(change.events)}
        outbox.extend(
            (
                ord,
                m.subject,
                m.msg_id,
                m.payload,
                position.get(m.msg_id) if m.payload is None else None,
            )
            for m in change.outbox
        )
        if change.expected_version is not None:
            updated.append(run.id)
    stage_columns = _columns(stages, 15)
    outbox_columns = _columns(outbox, 5)
    return [
        *_columns(runs, 28),
        *constants,
        *stage_columns[:14],
        *_columns(events, 8),
        *_columns(hooks, 6),
        *outbox_columns[:4],
        stage_columns[14],  # $63: whether each stage row is new
        updated,  # $64: the runs changed (not created)
        outbox_columns[4],  # $65: each outbox row's event, by position
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
    rows = await conn.fetch(_WRITE, *_arguments(changes, takes))
    return [
        Written(row["applied"], row if take is not None else None)
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
        # Two changes of one run (never from one worker, which runs a run once at a
        # time) go in successive statements: the second then meets the first's version.
        first: list[Item] = []
        later: list[Item] = []
        seen: set[str] = set()
        for item in batch:
            (later if item[0].run.id in seen else first).append(item)
            seen.add(item[0].run.id)
        answers = await self._statement(first)
        if later:
            rest = iter(await self._write(later))
            firsts = iter(answers)
            ids: set[str] = set()
            ordered: list[Written | BaseException] = []
            for item in batch:
                ordered.append(next(rest) if item[0].run.id in ids else next(firsts))
                ids.add(item[0].run.id)
            return ordered
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
