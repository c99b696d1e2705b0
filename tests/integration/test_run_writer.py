"""The one writer of runs against the real Postgres: creations with their rate take, the
version fence, and everything a change carries landing together (or not at all)."""

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.runs.domain.transitions import (
    Canceled,
    Change,
    Completed,
    Created,
    RunState,
    StageCompleted,
    StageRef,
    StageResult,
    Started,
    advance,
)
from services.runs.store import ratelimit
from services.runs.store.writer import RateTake, RunWriter, write
from weftcore.db import create_pool
from weftcore.ids import new_id, utcnow
from weftcore.nats import JOBS_SUBJECT


@pytest.fixture(scope="module")
async def pool(stack: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.dsn, "runs", min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def workflow(pool: asyncpg.Pool) -> tuple[str, int]:
    row = await pool.fetchrow("SELECT workflow_id, version FROM workflow_versions LIMIT 1")
    assert row is not None
    return row["workflow_id"], row["version"]


def new_run(workflow: tuple[str, int], **extra: Any) -> RunState:
    return RunState(
        id=new_id("run"),
        workflow_id=workflow[0],
        workflow_version=workflow[1],
        user_id="usr_writer",
        team_id="",
        account_id=extra.pop("account_id", "usr_writer"),
        input_text="hi",
        params={"n": 1},
        attachment_ids=["att_1"],
        webhook_url=extra.pop("webhook_url", None),
        holds_reservation=True,
        created_at=utcnow(),
    )


def created_without_job(state: RunState) -> Change:
    """The run's creation, minus its first job: no worker races the test's own changes."""
    change = advance(state, [Created()], state.created_at)
    return dataclasses.replace(
        change, outbox=tuple(m for m in change.outbox if m.subject != JOBS_SUBJECT)
    )


def take(account: str, limit: int) -> RateTake:
    return ratelimit.ticket(account, "pro", {"pro": limit}, time.time()).args()


async def outbox(pool: asyncpg.Pool, run_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT subject, msg_id, payload FROM outbox WHERE subject LIKE '%' || $1 || '%'"
        " OR (subject = 'weft.jobs.run' AND convert_from(payload, 'UTF8')::json->>'run_id' = $1)"
        " ORDER BY id",
        run_id,
    )


async def test_a_creation_and_a_whole_run_land_with_their_events_and_outbox_rows(
    pool: asyncpg.Pool, workflow: tuple[str, int]
) -> None:
    state = new_run(workflow, webhook_url="https://hooks.example.com/w")
    created = created_without_job(state)
    [written] = await write(pool, [created], [take(f"usr_{uuid.uuid4().hex}", 10)])
    assert written.applied and written.take is not None and written.take["took"] == 1
    finished = advance(
        created.run,
        [
            Started("w1"),
            StageCompleted(StageRef(0, "a", "template"), StageResult({"x": 1}, duration_ms=3)),
            Completed({"x": 1}),
        ],
        utcnow(),
    )
    [written] = await write(pool, [finished])
    assert written.applied and written.take is None

    row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", state.id)
    assert row is not None
    assert (row["status"], row["result"], row["version"], row["next_event_seq"]) == (
        "completed",
        {"x": 1},
        2,
        6,
    )
    assert row["params"] == {"n": 1} and row["attachment_ids"] == ["att_1"]
    stage = await pool.fetchrow("SELECT * FROM stage_results WHERE run_id = $1", state.id)
    assert stage is not None and (stage["status"], stage["output"]) == ("completed", {"x": 1})
    events = await pool.fetch(
        "SELECT seq, type, payload FROM run_events WHERE run_id = $1 ORDER BY seq", state.id
    )
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "run.created"),
        (2, "run.started"),
        (3, "stage.started"),
        (4, "stage.completed"),
        (5, "run.completed"),
    ]
    rows = await outbox(pool, state.id)
    assert [r["subject"] for r in rows] == [
        f"weft.runs.{state.id}.run.created",
        f"weft.billing.{state.id}.run.created",  # (its job left out: created_without_job)
        f"weft.runs.{state.id}.run.started",
        f"weft.runs.{state.id}.stage.started",
        f"weft.runs.{state.id}.stage.completed",
        f"weft.runs.{state.id}.run.completed",
        f"weft.billing.{state.id}.run.completed",
    ]
    # An event's outbox rows carry the event as stored (sent once, copied in SQL).
    by_id = {e["payload"]["id"]: e["payload"] for e in events}
    completed = [r for r in rows if r["subject"].endswith("run.completed")]
    assert all(json.loads(bytes(r["payload"])) == by_id[r["msg_id"]] for r in completed)
    hooks = await pool.fetch(
        "SELECT event_type, url FROM webhook_deliveries WHERE run_id = $1", state.id
    )
    assert [(h["event_type"], h["url"]) for h in hooks] == [
        ("run.completed", "https://hooks.example.com/w")
    ]


async def test_a_change_from_a_state_that_moved_on_writes_nothing(
    pool: asyncpg.Pool, workflow: tuple[str, int]
) -> None:
    state = new_run(workflow)
    created = created_without_job(state)
    assert (await write(pool, [created]))[0].applied
    canceled = advance(created.run, [Canceled()], utcnow())
    late = advance(created.run, [Started("w1")], utcnow())  # read before the cancel
    assert (await write(pool, [canceled]))[0].applied
    assert not (await write(pool, [late]))[0].applied
    row = await pool.fetchrow("SELECT status, worker_id FROM runs WHERE id = $1", state.id)
    assert row is not None and (row["status"], row["worker_id"]) == ("canceled", None)
    types = await pool.fetch("SELECT type FROM run_events WHERE run_id = $1", state.id)
    assert sorted(t["type"] for t in types) == ["run.canceled", "run.created"]


async def test_two_writers_of_one_state_one_wins(
    pool: asyncpg.Pool, workflow: tuple[str, int]
) -> None:
    state = new_run(workflow)
    created = created_without_job(state)
    assert (await write(pool, [created]))[0].applied
    writer = RunWriter(pool)
    try:
        changes = [advance(created.run, [Started(f"w{i}")], utcnow()) for i in range(6)]
        written = await asyncio.gather(*(writer.write(c) for c in changes))
    finally:
        await writer.close()
    assert sum(w.applied for w in written) == 1
    winner = changes[[w.applied for w in written].index(True)].run.worker_id
    row = await pool.fetchrow("SELECT worker_id, version FROM runs WHERE id = $1", state.id)
    assert row is not None and (row["worker_id"], row["version"]) == (winner, 2)
    started = await pool.fetchval(
        "SELECT count(*) FROM run_events WHERE run_id = $1 AND type = 'run.started'", state.id
    )
    assert started == 1


async def test_creations_over_the_rate_limit_write_nothing(
    pool: asyncpg.Pool, workflow: tuple[str, int]
) -> None:
    account = f"usr_{uuid.uuid4().hex}"
    writer = RunWriter(pool)
    states = [new_run(workflow, account_id=account) for _ in range(5)]
    try:
        written = await asyncio.gather(
            *(writer.write(created_without_job(s), take(account, 3)) for s in states)
        )
    finally:
        await writer.close()
    assert sorted(w.applied for w in written) == [False, False, True, True, True]
    assert all(w.take is not None and w.take["took"] == int(w.applied) for w in written)
    refused = [s.id for s, w in zip(states, written, strict=True) if not w.applied]
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE id = ANY($1)", refused) == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM run_events WHERE run_id = ANY($1)", refused) == 0
    )
    for run_id in refused:
        assert await outbox(pool, run_id) == []
