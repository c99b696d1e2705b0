"""SQL of the runs API's reads: runs and their stage results (workflows: store/workflows.py)."""

from typing import Any

import asyncpg
from asyncpg import Record

# ---- runs --------------------------------------------------------------------------

# A run's place among those waiting for a slot of the same limit (its workflow's when it
# has one, else its account's): 1 + the waiting runs ahead of it, as the dispatcher
# orders them (services/runs/worker/dispatch.py); NULL when it is not waiting.
_QUEUE_POSITION = """
CASE WHEN r.status = 'pending' AND r.queued_at IS NOT NULL THEN 1 + (
    SELECT count(*) FROM runs q
    WHERE q.status = 'pending' AND q.queued_at IS NOT NULL
      AND CASE WHEN r.concurrency_limit IS NOT NULL THEN q.workflow_id = r.workflow_id
               ELSE q.account_id = r.account_id END
      AND (q.priority > r.priority
           OR (q.priority = r.priority AND (q.created_at, q.id) < (r.created_at, r.id))))
END AS queue_position"""
_RUN = f"SELECT r.*, {_QUEUE_POSITION} FROM runs r"


async def get_run(conn: asyncpg.Connection | asyncpg.Pool, run_id: str) -> Record | None:
    return await conn.fetchrow(f"{_RUN} WHERE r.id = $1", run_id)


async def get_run_with_stages(
    conn: asyncpg.Connection | asyncpg.Pool, run_id: str
) -> tuple[Record, list[dict[str, Any]]] | None:
    """The run and its stage results in one round trip (the polling hot path)."""
    row = await conn.fetchrow(
        f"SELECT r.*, {_QUEUE_POSITION}, coalesce((SELECT json_agg(s) FROM stage_results s"
        " WHERE s.run_id = r.id), '[]'::json) AS stage_rows FROM runs r WHERE r.id = $1",
        run_id,
    )
    if row is None:
        return None
    return row, list(row["stage_rows"])


async def get_status(pool: asyncpg.Pool, run_id: str) -> str | None:
    return await pool.fetchval("SELECT status FROM runs WHERE id = $1", run_id)  # type: ignore[no-any-return]


async def stage_rows(conn: asyncpg.Connection | asyncpg.Pool, run_id: str) -> list[Record]:
    return await conn.fetch("SELECT * FROM stage_results WHERE run_id = $1", run_id)


async def stage_rows_for(pool: asyncpg.Pool, run_ids: list[str]) -> dict[str, list[Record]]:
    rows = await pool.fetch("SELECT * FROM stage_results WHERE run_id = ANY($1)", run_ids)
    out: dict[str, list[Record]] = {}
    for row in rows:
        out.setdefault(row["run_id"], []).append(row)
    return out


async def list_runs(
    pool: asyncpg.Pool,
    user_id: str,
    allowlist: list[str] | None,
    workflow_id: str,
    status: str,
    limit: int,
    starting_after: str,
) -> list[Record]:
    """The user's runs newest first (ids are time-ordered), after the cursor, of the
    workflows in `allowlist` only when one is given."""
    return await pool.fetch(
        f"{_RUN} WHERE r.user_id = $1"
        " AND ($2::text[] IS NULL OR r.workflow_id = ANY($2))"
        " AND ($3 = '' OR r.workflow_id = $3) AND ($4 = '' OR r.status = $4)"
        " AND ($5 = '' OR r.id < $5)"
        " ORDER BY r.id DESC LIMIT $6",
        user_id,
        allowlist,
        workflow_id,
        status,
        starting_after,
        limit,
    )
