"""Group commit for CreateRun's hot path: creations that arrive while one statement is
running go together in the next one.

Each creation is still all-or-nothing and still takes the rate limit first (the
`rate_take` SQL function, per row, accounts in sorted order so two batches never wait
on each other's locks). Only the statement is shared: at 64 concurrent requests one
statement carries tens of runs, instead of tens of statements with a commit each.

If a batch fails for a reason one of its rows may cause, each row is retried alone, so
one creation's error never becomes another's.
"""

import json
import logging
from typing import Any

import asyncpg

from services.runs.store.events import created_run, insert_created_taking
from weftcore.batching import Batcher
from weftcore.events import RUN_CREATED, RunEvent
from weftcore.nats import JOBS_SUBJECT

log = logging.getLogger(__name__)

MAX_BATCH = 256

# One row per creation: the columns of events._INSERT_CREATED_TAKING as arrays.
_INSERT_MANY = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::timestamptz[], $12::text[], $13::text[], $14::text[],
                         $15::text[], $16::bytea[], $17::text[], $18::bigint[],
                         $19::bigint[], $20::boolean[], $21::text[])
        WITH ORDINALITY AS i (id, workflow_id, workflow_version, user_id, team_id,
                              account_id, input_text, params, attachment_ids, webhook_url,
                              created_at, event_id, event, subject, job_id, job,
                              rate_account, bucket, lim, holds_reservation, billing_subject,
                              ord)
), take AS MATERIALIZED (
    SELECT i.ord, t.n, t.oldest, t.took
    FROM (SELECT * FROM input ORDER BY rate_account, ord) AS i
    CROSS JOIN LATERAL rate_take($22::int, i.rate_account, i.bucket, i.lim, $23::bigint) AS t
), taken AS (
    SELECT i.* FROM input i JOIN take USING (ord) WHERE take.took = 1
), run AS (
    INSERT INTO runs (id, workflow_id, workflow_version, user_id, team_id, account_id,
                      input_text, params, attachment_ids, webhook_url, created_at, updated_at,
                      next_event_seq, holds_reservation)
    SELECT id, workflow_id, workflow_version, user_id, team_id, account_id, input_text,
           params::jsonb, ARRAY(SELECT jsonb_array_elements_text(attachment_ids::jsonb)),
           webhook_url, created_at, created_at, 2, holds_reservation
    FROM taken
), event AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT id, 1, event_id, $24::text, NULL, event::json, created_at FROM taken
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT v.subject, v.msg_id, v.payload
    FROM taken
    CROSS JOIN LATERAL (VALUES (1, taken.subject, taken.event_id, convert_to(taken.event, 'UTF8')),
                               (2, taken.billing_subject, taken.event_id,
                                convert_to(taken.event, 'UTF8')),
                               (3, $25::text, taken.job_id, taken.job))
         AS v (k, subject, msg_id, payload)
    WHERE v.subject IS NOT NULL  -- billing's copy only for runs that hold a reservation
    ORDER BY taken.ord, v.k
)
SELECT ord, n, oldest, took FROM take ORDER BY ord
"""


Creation = tuple[tuple[Any, ...], tuple[Any, ...]]  # events.created_run's args, the take's


class CreationBatcher:
    """`insert` = events.insert_created_run with a rate take, sharing statements: one
    statement at a time, carrying every creation that arrived meanwhile."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._batcher: Batcher[Creation, asyncpg.Record] = Batcher(
            self._write, max_batch=max_batch, max_in_flight=1
        )

    async def insert(
        self, run: dict[str, Any], rate_take: tuple[Any, ...]
    ) -> tuple[RunEvent, asyncpg.Record]:
        """The run's created event and its take's row (n, oldest, took); nothing is
        inserted when took is 0."""
        event, args = created_run(run)
        return event, await self._batcher.call((args, rate_take))

    async def close(self) -> None:
        """Finish the statements under way and refuse new creations (Batcher.close)."""
        await self._batcher.close()

    async def _write(self, batch: list[Creation]) -> list[asyncpg.Record | BaseException]:
        try:
            async with self._pool.acquire() as conn:
                if len(batch) == 1:
                    return [await insert_created_taking(conn, *batch[0])]
                return list(await conn.fetch(_INSERT_MANY, *_columns(batch)))
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("group insert failed; inserting one by one", extra={"error": repr(exc)})
            return [(await self._write([creation]))[0] for creation in batch]


def _columns(batch: list[Creation]) -> list[Any]:
    """_INSERT_MANY's arguments: one array per column, then the constants."""
    takes = [take for _, take in batch]
    lock_class, window = takes[0][0], takes[0][4]
    assert all(take[0] == lock_class and take[4] == window for take in takes)
    rows = [args for args, _ in batch]
    columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
    # created_run's args: 0 id .. 6 input_text, 7 params, 8 attachment_ids, 9 webhook_url,
    # 10 created_at, 11 event id, 12 type, 13 event json, 14 subject, 15 jobs subject,
    # 16 job id, 17 job payload, 18 holds_reservation, 19 billing subject.
    params = [json.dumps(value) for value in columns[7]]
    attachments = [json.dumps(list(value or [])) for value in columns[8]]
    return [
        *columns[0:7],
        params,
        attachments,
        columns[9],
        columns[10],
        columns[11],
        columns[13],
        columns[14],
        columns[16],
        columns[17],
        [take[1] for take in takes],
        [take[2] for take in takes],
        [take[3] for take in takes],
        columns[18],
        columns[19],
        lock_class,
        window,
        RUN_CREATED,
        JOBS_SUBJECT,
    ]
