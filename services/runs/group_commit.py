"""Group commit for CreateRun's hot path: creations that arrive while one statement is
running go together in the next one.

Each creation is still all-or-nothing and still takes the rate limit first (the
`rate_take` SQL function, per row, accounts in sorted order so two batches never wait
on each other's locks). Only the statement is shared: at 64 concurrent requests one
statement carries tens of runs, instead of tens of statements with a commit each.

If a batch fails for a reason one of its rows may cause, each row is retried alone, so
one creation's error never becomes another's.
"""

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.runs.events import created_run, insert_created_taking
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
                         $19::bigint[])
        WITH ORDINALITY AS i (id, workflow_id, workflow_version, user_id, team_id,
                              account_id, input_text, params, attachment_ids, webhook_url,
                              created_at, event_id, event, subject, job_id, job,
                              rate_account, bucket, lim, ord)
), take AS MATERIALIZED (
    SELECT i.ord, t.n, t.oldest, t.took
    FROM (SELECT * FROM input ORDER BY rate_account, ord) AS i
    CROSS JOIN LATERAL rate_take($20::int, i.rate_account, i.bucket, i.lim, $21::bigint) AS t
), taken AS (
    SELECT i.* FROM input i JOIN take USING (ord) WHERE take.took = 1
), run AS (
    INSERT INTO runs (id, workflow_id, workflow_version, user_id, team_id, account_id,
                      input_text, params, attachment_ids, webhook_url, created_at, updated_at,
                      next_event_seq)
    SELECT id, workflow_id, workflow_version, user_id, team_id, account_id, input_text,
           params::jsonb, ARRAY(SELECT jsonb_array_elements_text(attachment_ids::jsonb)),
           webhook_url, created_at, created_at, 2
    FROM taken
), event AS (
    INSERT INTO run_events (run_id, seq, event_id, type, stage, payload, created_at)
    SELECT id, 1, event_id, $22::text, NULL, event::jsonb, created_at FROM taken
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT v.subject, v.msg_id, v.payload
    FROM taken
    CROSS JOIN LATERAL (VALUES (1, taken.subject, taken.event_id, convert_to(taken.event, 'UTF8')),
                               (2, $23::text, taken.job_id, taken.job))
         AS v (k, subject, msg_id, payload)
    ORDER BY taken.ord, v.k
)
SELECT ord, n, oldest, took FROM take ORDER BY ord
"""


@dataclass
class _Creation:
    args: tuple[Any, ...]  # events.created_run's
    rate_take: tuple[Any, ...]  # ratelimit.TAKE_SQL's
    answer: "asyncio.Future[asyncpg.Record]" = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CreationBatcher:
    """`insert` = events.insert_created_run with a rate take, sharing statements."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._waiting: list[_Creation] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(
        self, run: dict[str, Any], rate_take: tuple[Any, ...]
    ) -> tuple[RunEvent, asyncpg.Record]:
        """The run's created event and its take's row (n, oldest, took); nothing is
        inserted when took is 0."""
        event, args = created_run(run)
        creation = _Creation(args, rate_take)
        self._waiting.append(creation)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="create-group-commit")
        return event, await creation.answer

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                # A caller that gave up before its statement was sent is simply left out.
                await self._write([c for c in batch if not c.answer.done()])
        finally:
            self._flusher = None

    async def _write(self, batch: list[_Creation]) -> None:
        if not batch:
            return
        try:
            async with self._pool.acquire() as conn:
                if len(batch) == 1:
                    only = batch[0]
                    rows = [await insert_created_taking(conn, only.args, only.rate_take)]
                else:
                    rows = await conn.fetch(_INSERT_MANY, *_columns(batch))
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                _answer(batch[0], exc)
                return
            log.warning("group insert failed; inserting one by one", extra={"error": repr(exc)})
            for creation in batch:
                await self._write([creation])
            return
        except BaseException as exc:
            for creation in batch:
                _answer(creation, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for creation, row in zip(batch, rows, strict=True):
            _answer(creation, row)


def _answer(creation: _Creation, outcome: asyncpg.Record | BaseException) -> None:
    if creation.answer.done():
        return
    if isinstance(outcome, BaseException):
        creation.answer.set_exception(outcome)
    else:
        creation.answer.set_result(outcome)


def _columns(batch: list[_Creation]) -> list[Any]:
    """_INSERT_MANY's arguments: one array per column, then the constants."""
    lock_class, window = batch[0].rate_take[0], batch[0].rate_take[4]
    assert all(c.rate_take[0] == lock_class and c.rate_take[4] == window for c in batch)
    rows = [c.args for c in batch]
    columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
    # created_run's args: 0 id .. 6 input_text, 7 params, 8 attachment_ids, 9 webhook_url,
    # 10 created_at, 11 event id, 12 type, 13 event json, 14 subject, 15 jobs subject,
    # 16 job id, 17 job payload.
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
        [c.rate_take[1] for c in batch],
        [c.rate_take[2] for c in batch],
        [c.rate_take[3] for c in batch],
        lock_class,
        window,
        RUN_CREATED,
        JOBS_SUBJECT,
    ]
