"""CreationBatcher: concurrent creations share one statement; one bad row fails alone."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.runs.store.events import created_run
from services.runs.store.group_commit import CreationBatcher, _columns
from weftcore.batching import BatcherClosed

RATE = (7, "usr_a", 1000, 50, 3600)


def new_run(run_id: str, holds_reservation: bool = False) -> dict[str, Any]:
    return {
        "id": run_id,
        "workflow_id": "wfl_1",
        "workflow_version": 1,
        "user_id": "usr_a",
        "team_id": "",
        "account_id": "usr_a",
        "input_text": "hi",
        "params": {"n": 1},
        "attachment_ids": [],
        "webhook_url": None,
        "holds_reservation": holds_reservation,
    }


class FakeConn:
    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.gate = asyncio.Event()  # statements wait for it
        self.gate.set()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        ids = list(args[0])
        self.batches.append(ids)
        if self.bad & set(ids):
            raise asyncpg.exceptions.CheckViolationError("a bad row")
        return [{"ord": i + 1, "n": i, "oldest": None, "took": 1} for i in range(len(ids))]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any]:
        self.singles.append(args[0])
        await self.gate.wait()
        if args[0] in self.bad:
            raise asyncpg.exceptions.CheckViolationError("a bad row")
        return {"n": 0, "oldest": None, "took": 1, "id": args[0]}


class FakePool:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        await asyncio.sleep(0)  # a real acquire yields too
        yield self.conn


async def one_out(conn: FakeConn) -> tuple[CreationBatcher, "asyncio.Future[Any]"]:
    """A batcher whose first creation went out alone at once and is held there."""
    conn.gate.clear()
    batcher = CreationBatcher(FakePool(conn))  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.insert(new_run("run_first"), RATE))
    await asyncio.sleep(0.01)
    assert conn.singles == ["run_first"]
    return batcher, first


async def test_creations_made_during_a_statement_share_the_next() -> None:
    conn = FakeConn(bad=set())
    batcher, first = await one_out(conn)
    rest = asyncio.gather(*(batcher.insert(new_run(f"run_{i}"), RATE) for i in range(10)))
    await asyncio.sleep(0.01)
    conn.gate.set()
    await first
    answers = await rest
    assert conn.batches == [[f"run_{i}" for i in range(10)]]
    assert [row["n"] for _, row in answers] == list(range(10))  # each caller its own row
    assert [event.run_id for event, _ in answers] == [f"run_{i}" for i in range(10)]


async def test_a_failing_row_fails_alone() -> None:
    conn = FakeConn(bad={"run_3"})
    batcher, first = await one_out(conn)
    rest = asyncio.gather(
        *(batcher.insert(new_run(f"run_{i}"), RATE) for i in range(5)), return_exceptions=True
    )
    await asyncio.sleep(0.01)
    conn.gate.set()
    await first
    answers = await rest
    assert isinstance(answers[3], asyncpg.exceptions.CheckViolationError)
    assert all(not isinstance(a, BaseException) for i, a in enumerate(answers) if i != 3)
    assert conn.batches == [[f"run_{i}" for i in range(5)]]
    assert conn.singles == ["run_first"] + [f"run_{i}" for i in range(5)]  # one by one


async def test_a_caller_gone_before_the_statement_is_left_out() -> None:
    conn = FakeConn(bad=set())
    batcher, first = await one_out(conn)
    gone = asyncio.ensure_future(batcher.insert(new_run("run_gone"), RATE))
    kept = asyncio.ensure_future(batcher.insert(new_run("run_kept"), RATE))
    await asyncio.sleep(0.01)  # both wait for the first statement
    gone.cancel()
    conn.gate.set()
    await first
    _, row = await kept
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert conn.singles == ["run_first", "run_kept"] and conn.batches == []
    assert row["id"] == "run_kept"


def test_only_a_run_holding_a_reservation_gets_billing_a_copy_of_run_created() -> None:
    runs = [new_run("run_f", holds_reservation=False), new_run("run_h", holds_reservation=True)]
    batch = [(created_run(run)[1], RATE) for run in runs]
    columns = _columns(batch)
    # $20 holds_reservation, $21 billing's subject (NULL: no copy).
    assert columns[19] == [False, True]
    assert columns[20] == [None, "weft.billing.run_h.run.created"]


async def test_close_finishes_the_statement_out_and_refuses_new_creations() -> None:
    conn = FakeConn(bad=set())
    batcher, first = await one_out(conn)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    conn.gate.set()
    await asyncio.wait_for(closing, 1)
    _, row = await first
    assert row["took"] == 1
    with pytest.raises(BatcherClosed):
        await batcher.insert(new_run("run_late"), RATE)
    assert conn.singles == ["run_first"]
