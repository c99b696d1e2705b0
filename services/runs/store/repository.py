"""SQL of the runs API: workflows and their versions, runs, stage results."""

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg import Record


@dataclass(frozen=True)
class AppliedWorkflow:
    row: Record
    definition: dict[str, Any]
    changed: bool  # False: the definition was identical to the current version


# ---- workflows ---------------------------------------------------------------------

_WF_COLUMNS = "w.*, v.definition"
_WF_JOIN = (
    "FROM workflows w JOIN workflow_versions v "
    "ON v.workflow_id = w.id AND v.version = w.current_version"
)


async def get_workflow(conn: asyncpg.Connection | asyncpg.Pool, ref: str) -> Record | None:
    """The workflow (with its current definition) by id or by slug."""
    column = "w.id" if ref.startswith("wf_") else "w.slug"
    return await conn.fetchrow(f"SELECT {_WF_COLUMNS} {_WF_JOIN} WHERE {column} = $1", ref)


async def list_workflows(
    pool: asyncpg.Pool, allowlist: list[str] | None, limit: int, starting_after: str
) -> list[Record]:
    """Up to `limit` workflows by id after the cursor, restricted to `allowlist` if given."""
    return await pool.fetch(
        f"SELECT {_WF_COLUMNS} {_WF_JOIN} "
        "WHERE ($1::text[] IS NULL OR w.id = ANY($1)) AND w.id > $2 "
        "ORDER BY w.id LIMIT $3",
        allowlist,
        starting_after,
        limit,
    )


async def get_workflow_version(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str, version: int
) -> dict[str, Any] | None:
    definition = await conn.fetchval(
        "SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
        workflow_id,
        version,
    )
    return definition  # type: ignore[no-any-return]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


async def apply_workflow(pool: asyncpg.Pool, definition: dict[str, Any]) -> AppliedWorkflow:
    """Create the workflow, or add a version when the definition changed.

    Matched by id (slug changes are allowed); a slug taken by another id is a ValueError.
    """
    wf_id, slug = definition["id"], definition["slug"]
    async with pool.acquire() as conn, conn.transaction():
        # Serialise concurrent applies of one workflow (row may not exist yet).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", wf_id)
        other = await conn.fetchval("SELECT id FROM workflows WHERE slug = $1", slug)
        if other is not None and other != wf_id:
            raise ValueError(f"slug {slug!r} already belongs to workflow {other}")
        current = await get_workflow(conn, wf_id)
        if current is not None and _same(current["definition"], definition):
            return AppliedWorkflow(current, definition, changed=False)
        version = 1 if current is None else current["current_version"] + 1
        if current is None:
            await conn.execute(
                "INSERT INTO workflows (id, slug, name, description, current_version) "
                "VALUES ($1, $2, $3, $4, 0)",
                wf_id,
                slug,
                definition["name"],
                definition["description"],
            )
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, definition) VALUES ($1, $2, $3)",
            wf_id,
            version,
            definition,
        )
        await conn.execute(
            "UPDATE workflows SET slug = $2, name = $3, description = $4, current_version = $5,"
            " updated_at = now() WHERE id = $1",
            wf_id,
            slug,
            definition["name"],
            definition["description"],
            version,
        )
        row = await get_workflow(conn, wf_id)
        assert row is not None
        return AppliedWorkflow(row, definition, changed=True)


# ---- runs --------------------------------------------------------------------------


async def get_run(conn: asyncpg.Connection | asyncpg.Pool, run_id: str) -> Record | None:
    return await conn.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)


async def get_run_with_stages(
    conn: asyncpg.Connection | asyncpg.Pool, run_id: str
) -> tuple[Record, list[dict[str, Any]]] | None:
    """The run and its stage results in one round trip (the polling hot path)."""
    row = await conn.fetchrow(
        "SELECT r.*, coalesce((SELECT json_agg(s) FROM stage_results s"
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
        "SELECT * FROM runs WHERE user_id = $1"
        " AND ($2::text[] IS NULL OR workflow_id = ANY($2))"
        " AND ($3 = '' OR workflow_id = $3) AND ($4 = '' OR status = $4)"
        " AND ($5 = '' OR id < $5)"
        " ORDER BY id DESC LIMIT $6",
        user_id,
        allowlist,
        workflow_id,
        status,
        starting_after,
        limit,
    )
