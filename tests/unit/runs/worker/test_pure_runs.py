"""PureRunBatcher: pending runs computed and written together; a run that cannot be
planned (or is not pending) is handed back to the step-by-step path alone."""

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from services.runs.worker.model import PurePlan, RunRecord, StageResult
from services.runs.worker.pure import PureRunBatcher, _Job

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFINITION = {"stages": [{"id": "echo", "type": "template", "template": "{{ input_text }}"}]}


def pending(
    run_id: str, holds_reservation: bool = False, webhook_url: str | None = None
) -> dict[str, Any]:
    return {
        "id": run_id,
        "workflow_id": "wf_1",
        "workflow_version": 1,
        "user_id": "usr_1",
        "status": "pending",
        "input_text": run_id,
        "params": {},
        "attachment_ids": [],
        "human_inputs": {},
        "human_input_request": None,
        "result": None,
        "error": None,
        "cost_micros": 0,
        "next_event_seq": 2,
        "created_at": NOW,
        "started_at": None,
        "completed_at": None,
        "db_now": NOW,
        "holds_reservation": holds_reservation,
        "account_id": "usr_1",
        "webhook_url": webhook_url,
    }


class FakeConn:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.writes: list[tuple[Any, ...]] = []

    async def fetch(self, sql: str, ids: list[str]) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["id"] in ids]

    async def execute(self, sql: str, *args: Any) -> None:
        self.writes.append(args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class FakePool:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield self.conn


async def definitions(conn: Any, workflow_id: str, version: int) -> dict[str, Any]:
    return DEFINITION


async def plan(record: RunRecord) -> PurePlan | None:
    if record.input_text == "run_broken":
        raise RuntimeError("a bug in this run's plan")
    return PurePlan([StageResult(record.input_text)], record.input_text)


async def test_runs_are_written_together_and_the_rest_handed_back() -> None:
    done = {**pending("run_done"), "status": "completed"}  # a redelivered job's run
    conn = FakeConn([pending("run_a"), pending("run_b"), pending("run_broken"), done])
    batcher = PureRunBatcher(FakePool(conn), definitions)  # type: ignore[arg-type]
    jobs = [_Job(r, plan) for r in ("run_a", "run_broken", "run_gone", "run_done")]
    answers = await batcher._execute(jobs)
    # run_broken's plan failed, run_gone does not exist and run_done is not pending:
    # each takes the long way.
    assert answers == [True, False, False, False]
    assert len(conn.writes) == 1
    _, written_ids, results, *_ = conn.writes[0]
    assert written_ids == ["run_a"] and results == ['"run_a"']


async def written_together(*rows: dict[str, Any]) -> tuple[Any, ...]:
    """_WRITE's arguments for pending `rows` executed in one batch (all of them written)."""
    conn = FakeConn(list(rows))
    batcher = PureRunBatcher(FakePool(conn), definitions)  # type: ignore[arg-type]
    ids = [row["id"] for row in rows]
    assert await batcher._execute([_Job(run_id, plan) for run_id in ids]) == [True] * len(ids)
    assert len(conn.writes) == 1
    return conn.writes[0]


async def test_billing_gets_a_copy_of_run_completed_only_for_a_reserved_run() -> None:
    args = await written_together(pending("run_free"), pending("run_held", holds_reservation=True))
    event_ids, event_payloads = args[13], args[16]
    subjects, msg_ids, payloads = args[17], args[18], args[19]
    # Every event once on weft.runs, in event order; billing's copy right after its event.
    assert [s for s in subjects if s.startswith("weft.runs.")] == [
        f"weft.runs.{run}.{kind}"
        for run in ("run_free", "run_held")
        for kind in ("run.started", "stage.started", "stage.completed", "run.completed")
    ]
    assert subjects[-2:] == [
        "weft.runs.run_held.run.completed",
        "weft.billing.run_held.run.completed",
    ]
    assert sum(s.startswith("weft.billing.") for s in subjects) == 1
    # The copy is the same message: same id (JetStream de-duplicates per stream), same body.
    assert msg_ids[-1] == msg_ids[-2] == event_ids[-1]
    assert payloads[-1] == payloads[-2] == event_payloads[-1]


async def test_a_webhook_delivery_is_queued_with_run_completed_only_for_a_run_with_a_url() -> None:
    hooked = pending("run_hooked", webhook_url="https://example.com/hook")
    args = await written_together(pending("run_plain"), hooked)
    event_ids, types = args[13], args[14]
    completed = event_ids[types.index("run.completed", 4)]  # run_hooked's
    assert list(args[20:25]) == [
        [completed],
        ["run_hooked"],
        ["usr_1"],
        ["run.completed"],
        ["https://example.com/hook"],
    ]
