"""The worker's SQL: claiming runs, persisting stage results with their events.

Every state change commits together with its event (services.runs.store.events.record_event)
and only while this worker owns the run: `runs.status = 'running' AND worker_id = me`,
checked under the row lock. That fence is what makes a stage count once even when two
workers briefly hold jobs for the same run.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from services.runs.store.events import record_event
from services.runs.worker.model import PurePlan, RunRecord, StageError, StageResult
from services.runs.worker.pure import PureRunBatcher
from weftcore.events import (
    RUN_AWAITING_INPUT,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_STARTED,
    STAGE_COMPLETED,
    STAGE_STARTED,
    TERMINAL_STATUSES,
)

log = logging.getLogger(__name__)

_LOCK_RUN = """
SELECT id, workflow_id, workflow_version, user_id, status, input_text, params,
       attachment_ids, human_inputs, human_input_request, worker_id, heartbeat_at,
       started_at, now() AS db_now
FROM runs WHERE id = $1 FOR UPDATE
"""
_TAKE = """
UPDATE runs SET status = 'running', worker_id = $2, heartbeat_at = now(),
       started_at = coalesce(started_at, now()), human_input_request = NULL
WHERE id = $1
"""
_DEFINITION = "SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = $2"
_STAGES = "SELECT stage_id, status, output FROM stage_results WHERE run_id = $1"
_OWNED = "SELECT 1 FROM runs WHERE id = $1 AND status = 'running' AND worker_id = $2 FOR UPDATE"
_BEGIN_STAGE = """
INSERT INTO stage_results (run_id, stage_index, stage_id, stage_type, status)
VALUES ($1, $2, $3, $4, 'running')
ON CONFLICT (run_id, stage_id) DO UPDATE SET started_at = now()
    WHERE stage_results.status = 'running'
RETURNING (xmax = 0) AS inserted
"""
_SETTLE_STAGE = """
INSERT INTO stage_results (run_id, stage_index, stage_id, stage_type, status, output, model,
    input_tokens, output_tokens, cost_micros, duration_ms, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())
ON CONFLICT (run_id, stage_id) DO UPDATE SET status = EXCLUDED.status,
    output = EXCLUDED.output, model = EXCLUDED.model,
    input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
    cost_micros = EXCLUDED.cost_micros, duration_ms = EXCLUDED.duration_ms,
    completed_at = now()
    WHERE stage_results.status = 'running'
RETURNING (xmax = 0) AS inserted
"""
_ADD_COST = "UPDATE runs SET cost_micros = cost_micros + $2, heartbeat_at = now() WHERE id = $1"
_TOTAL_COST = """
(SELECT coalesce(sum(cost_micros), 0) FROM stage_results
 WHERE run_id = $1 AND status IN ('completed', 'failed'))
"""
_FINISH = f"""
UPDATE runs SET status = 'completed', result = $2, error = NULL, completed_at = now(),
       worker_id = NULL, cost_micros = {_TOTAL_COST}
WHERE id = $1
"""
_FAIL = f"""
UPDATE runs SET status = 'failed', error = $2, completed_at = now(),
       worker_id = NULL, cost_micros = {_TOTAL_COST}
WHERE id = $1
"""
_AWAIT = """
UPDATE runs SET status = 'awaiting_input', human_input_request = $2, worker_id = NULL,
       heartbeat_at = NULL
WHERE id = $1
"""
_HEARTBEAT = """
UPDATE runs SET heartbeat_at = now()
WHERE id = $1 AND status = 'running' AND worker_id = $2 RETURNING 1
"""
_RELEASE = (
    "UPDATE runs SET worker_id = NULL WHERE id = $1 AND worker_id = $2 AND status = 'running'"
)


def should_take(
    row: dict[str, Any] | asyncpg.Record, worker_id: str, stale_seconds: float, now: datetime
) -> bool:
    """Whether a job for this run should execute it now (pure; see the module docstring)."""
    status = row["status"]
    if status in TERMINAL_STATUSES:
        return False
    if status == "pending":
        return True
    if status == "awaiting_input":
        # Resumable only once SubmitInput stored the answer for the waiting stage.
        request = row["human_input_request"] or {}
        return bool(request.get("stage")) and request["stage"] in (row["human_inputs"] or {})
    if status == "running":
        owner, beat = row["worker_id"], row["heartbeat_at"]
        if owner is None or owner == worker_id or beat is None:
            return True
        # Another worker holds it: only take over when its heartbeat stopped.
        return (now - beat).total_seconds() > stale_seconds
    return False


class PgStore:
    """executor.Store over the runs schema."""

    def __init__(self, pool: asyncpg.Pool, stale_seconds: float) -> None:
        self.pool = pool
        self.stale_seconds = stale_seconds
        self._definitions: dict[tuple[str, int], dict[str, Any]] = {}  # versions are immutable
        self._pure = PureRunBatcher(pool, self._definition)

    async def claim(self, run_id: str, worker_id: str) -> RunRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_LOCK_RUN, run_id)
            if row is None:
                log.warning("job for an unknown run", extra={"run_id": run_id})
                return None
            if not should_take(row, worker_id, self.stale_seconds, row["db_now"]):
                return None
            await conn.execute(_TAKE, run_id, worker_id)
            first_start = row["started_at"] is None
            if first_start:
                await record_event(conn, run_id, RUN_STARTED)
            definition = await self._definition(conn, row["workflow_id"], row["workflow_version"])
            stages = await conn.fetch(_STAGES, run_id)
        return RunRecord.from_row(row, definition, stages, first_start=first_start)

    async def run_pure(
        self,
        run_id: str,
        worker_id: str,
        plan: Callable[[RunRecord], Awaitable[PurePlan | None]],
    ) -> bool:
        """Executes a `pending` run start to finish in one transaction, shared with other
        jobs that arrived meanwhile (services.runs.worker.pure), when `plan` computes
        every stage without outside effects. False: take the step-by-step path."""
        return await self._pure.run(run_id, plan)

    async def _definition(
        self, conn: asyncpg.Connection, workflow_id: str, version: int
    ) -> dict[str, Any]:
        key = (workflow_id, int(version))
        if key not in self._definitions:
            value = await conn.fetchval(_DEFINITION, workflow_id, version)
            if value is None:
                raise LookupError(f"workflow {workflow_id} v{version} is missing")
            self._definitions[key] = dict(value)
        return self._definitions[key]

    async def begin_stage(self, run: RunRecord, worker_id: str, index: int) -> bool:
        stage = run.stages[index]
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            inserted = await conn.fetchval(
                _BEGIN_STAGE, run.id, index, str(stage["id"]), str(stage["type"])
            )
            if inserted:
                await record_event(conn, run.id, STAGE_STARTED, str(stage["id"]))
            await conn.execute(_HEARTBEAT, run.id, worker_id)
        return True

    async def complete_stage(
        self, run: RunRecord, worker_id: str, index: int, result: StageResult
    ) -> bool:
        stage = run.stages[index]
        stage_id = str(stage["id"])
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            inserted = await self._settle(conn, run.id, index, stage, "completed", result)
            if inserted is None:
                return True  # already completed by an earlier attempt: count it once
            if inserted:  # a pure stage never had a `running` row, nor its started event
                await record_event(conn, run.id, STAGE_STARTED, stage_id)
            await conn.execute(_ADD_COST, run.id, result.cost_micros)
            await record_event(conn, run.id, STAGE_COMPLETED, stage_id)
        return True

    async def await_input(
        self, run: RunRecord, worker_id: str, index: int, request: dict[str, Any]
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            await conn.execute(_AWAIT, run.id, request)
            await record_event(conn, run.id, RUN_AWAITING_INPUT, str(run.stages[index]["id"]))
        return True

    async def finish(self, run: RunRecord, worker_id: str, result: Any) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            await conn.execute(_FINISH, run.id, result)
            await record_event(conn, run.id, RUN_COMPLETED)
        return True

    async def complete_and_finish(
        self, run: RunRecord, worker_id: str, index: int, stage_result: StageResult, result: Any
    ) -> bool:
        """complete_stage of the last stage and finish, in ONE transaction (a trailing pure
        stage: nothing outside happened, so nothing is lost if it rolls back)."""
        stage = run.stages[index]
        stage_id = str(stage["id"])
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            inserted = await self._settle(conn, run.id, index, stage, "completed", stage_result)
            if inserted is not None:  # None: completed by an earlier attempt, count it once
                if inserted:
                    await record_event(conn, run.id, STAGE_STARTED, stage_id)
                if stage_result.cost_micros:
                    await conn.execute(_ADD_COST, run.id, stage_result.cost_micros)
                await record_event(conn, run.id, STAGE_COMPLETED, stage_id)
            await conn.execute(_FINISH, run.id, result)
            await record_event(conn, run.id, RUN_COMPLETED)
        return True

    async def fail(
        self, run: RunRecord, worker_id: str, index: int | None, error: StageError
    ) -> bool:
        stage = run.stages[index] if index is not None else None
        stage_id = str(stage["id"]) if stage is not None else "output"
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_OWNED, run.id, worker_id) is None:
                return False
            if stage is not None and index is not None:
                usage = error.usage or StageResult(output=None)
                await self._settle(conn, run.id, index, stage, "failed", usage, output=None)
            body = {"code": error.code, "message": error.message, "stage": stage_id}
            await conn.execute(_FAIL, run.id, body)
            await record_event(conn, run.id, RUN_FAILED, stage_id)
        return True

    async def _settle(
        self,
        conn: asyncpg.Connection,
        run_id: str,
        index: int,
        stage: dict[str, Any],
        status: str,
        result: StageResult,
        **override: Any,
    ) -> bool | None:
        """Write the stage's final row; None when it was already final (not counted again)."""
        output = override.get("output", result.output)
        value: bool | None = await conn.fetchval(
            _SETTLE_STAGE,
            run_id,
            index,
            str(stage["id"]),
            str(stage["type"]),
            status,
            output,
            result.model,
            result.input_tokens,
            result.output_tokens,
            result.cost_micros,
            result.duration_ms,
        )
        return value

    async def heartbeat(self, run_id: str, worker_id: str) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(_HEARTBEAT, run_id, worker_id) is not None

    async def release(self, run_id: str, worker_id: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(_RELEASE, run_id, worker_id)
