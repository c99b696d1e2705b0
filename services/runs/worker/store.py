"""The worker's view of Postgres: reading runs, writing their transitions, heartbeats.

Reads and writes of concurrent jobs share statements (weftcore.batching): under load one
round trip reads tens of runs, and one statement (services/runs/store/writer.py) writes
tens of changes. A write applies only if the run is still at the version the worker
read: a run canceled or taken over meanwhile refuses it, so a stage counts once.
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.runs.domain.transitions import RunState, Transition, advance
from services.runs.store.writer import RunWriter, write
from services.runs.worker.model import NoSlot, RunRecord
from weftcore.batching import Batcher
from weftcore.events import TERMINAL_STATUSES
from weftcore.ids import utcnow

log = logging.getLogger(__name__)

MAX_READ = 128

_RUNS = "SELECT *, now() AS db_now FROM runs WHERE id = ANY($1::text[])"
_STAGES = "SELECT * FROM stage_results WHERE run_id = ANY($1::text[])"
_DEFINITIONS = """
SELECT workflow_id, version, definition FROM workflow_versions
WHERE (workflow_id, version) IN (SELECT * FROM unnest($1::text[], $2::int[]))
"""
_HEARTBEAT = """
UPDATE runs SET heartbeat_at = now()
WHERE id = $1 AND status = 'running' AND worker_id = $2 RETURNING 1
"""


def should_take(state: RunState, worker_id: str, stale_seconds: float, now: datetime) -> bool:
    """Whether a job for this run should execute it now (`now`: the database's clock)."""
    status = state.status
    if status in TERMINAL_STATUSES:
        return False
    if status == "pending":
        return True
    if status == "awaiting_input":
        # Resumable only once SubmitInput stored the answer for the waiting stage.
        request = state.human_input_request or {}
        return bool(request.get("stage")) and request["stage"] in state.human_inputs
    if status == "running":
        owner, beat = state.worker_id, state.heartbeat_at
        if owner is None or owner == worker_id or beat is None:
            return True
        # Another worker holds it: only take over when its heartbeat stopped.
        return (now - beat).total_seconds() > stale_seconds
    return False


class PgStore:
    """executor.Store over the runs schema."""

    def __init__(self, pool: asyncpg.Pool, writer: RunWriter) -> None:
        self.pool = pool
        self._writer = writer
        self._definitions: dict[tuple[str, int], dict[str, Any]] = {}  # versions are immutable
        self._reads: Batcher[str, RunRecord | None] = Batcher(
            self._read, max_batch=MAX_READ, max_in_flight=1
        )

    async def load(self, run_id: str) -> RunRecord | None:
        """The run as it is now, with its definition; None for an unknown run."""
        return await self._reads.call(run_id)

    async def load_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        """`load` of each, in one read."""
        return [
            None if isinstance(record, BaseException) else record
            for record in await self._read(list(run_ids))
        ]

    async def write_many(self, changes: Sequence[tuple[RunRecord, list[Transition]]]) -> list[bool]:
        """`write` of each (distinct runs), in one statement."""
        now = utcnow()
        advanced = [advance(run.state, transitions, now) for run, transitions in changes]
        written = await write(self.pool, advanced)
        for (run, _), change, done in zip(changes, advanced, written, strict=True):
            if done.applied:
                run.state = change.run
        return [done.applied for done in written]

    async def write(self, run: RunRecord, *transitions: Transition) -> bool:
        """Apply `transitions` to the run and write them; False (nothing written) when
        the run changed since it was read. On success `run.state` is the new state.
        NoSlot (nothing written) when they start the run and a limit has no slot free."""
        change = advance(run.state, transitions, utcnow())
        written = await self._writer.write(change)
        if written.applied:
            run.state = change.run
        elif written.no_slot:
            raise NoSlot()
        return written.applied

    async def heartbeat(self, run_id: str, worker_id: str) -> bool:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(_HEARTBEAT, run_id, worker_id) is not None

    async def close(self) -> None:
        await self._reads.close()

    async def _read(self, run_ids: list[str]) -> list[RunRecord | BaseException | None]:
        ids = sorted(set(run_ids))
        async with self.pool.acquire() as conn:
            rows = {row["id"]: row for row in await conn.fetch(_RUNS, ids)}
            stages: dict[str, list[asyncpg.Record]] = {}
            started = [run_id for run_id, row in rows.items() if row["status"] != "pending"]
            for stage in await conn.fetch(_STAGES, started) if started else ():
                stages.setdefault(stage["run_id"], []).append(stage)
            await self._load_definitions(conn, rows.values())
        records: list[RunRecord | BaseException | None] = []
        for run_id in run_ids:
            row = rows.get(run_id)
            if row is None:
                log.warning("job for an unknown run", extra={"run_id": run_id})
                records.append(None)
                continue
            state = RunState.from_rows(row, stages.get(run_id, []))
            definition = self._definitions[(state.workflow_id, state.workflow_version)]
            records.append(RunRecord.of(state, definition, row["db_now"]))
        return records

    async def _load_definitions(self, conn: asyncpg.Connection, rows: Any) -> None:
        missing = {
            (row["workflow_id"], int(row["workflow_version"]))
            for row in rows
            if (row["workflow_id"], int(row["workflow_version"])) not in self._definitions
        }
        if not missing:
            return
        found = await conn.fetch(_DEFINITIONS, [k[0] for k in missing], [k[1] for k in missing])
        for row in found:
            self._definitions[(row["workflow_id"], int(row["version"]))] = dict(row["definition"])
        for key in missing - set(self._definitions):
            raise LookupError(f"workflow {key[0]} v{key[1]} is missing")
