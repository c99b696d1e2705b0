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


def pending(run_id: str) -> dict[str, Any]:
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
    conn = FakeConn([pending("run_a"), pending("run_b"), pending("run_broken")])
    batcher = PureRunBatcher(FakePool(conn), definitions)  # type: ignore[arg-type]
    answers = await batcher._execute([_Job(r, plan) for r in ("run_a", "run_broken", "run_gone")])
    # run_broken's plan failed and run_gone is not pending: both take the long way.
    assert answers == [True, False, False]
    assert len(conn.writes) == 1
    _, written_ids, results, *_ = conn.writes[0]
    assert written_ids == ["run_a"] and results == ['"run_a"']
