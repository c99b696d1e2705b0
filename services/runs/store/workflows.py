"""SQL of workflows: their rows, drafts and immutable versions (migrations 0001, 0012).

A workflow row carries its owner (user, team, or neither: the operator's catalog), its
draft and the number of its latest published version; `workflow_versions` holds every
published definition (1, 2, ...) and the drafts that runs pinned (-<draft revision>).
"""

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg import Record

# The workflow with its latest published definition (NULL before the first publish).
_COLUMNS = "w.*, v.definition, v.created_at AS published_at, v.published_by"
_FROM = (
    "FROM workflows w LEFT JOIN workflow_versions v "
    "ON v.workflow_id = w.id AND v.version = w.current_version"
)
# Who may see a workflow: its owner, its team's members, everyone for the catalog.
# $1: the caller's user id (NULL: anyone, for operators), $2: the caller's team id.
_VISIBLE = (
    "($1::text IS NULL OR (w.owner_user_id IS NULL AND w.owner_team_id IS NULL)"
    " OR w.owner_user_id = $1 OR (w.owner_team_id <> '' AND w.owner_team_id = $2))"
)


class SlugTaken(Exception):
    """The slug belongs to another workflow."""

    def __init__(self, slug: str, other: str) -> None:
        super().__init__(f"The slug {slug!r} is taken by another workflow.")
        self.slug, self.other = slug, other


@dataclass(frozen=True)
class AppliedWorkflow:
    row: Record
    definition: dict[str, Any]
    changed: bool  # False: the definition was identical to the current version


async def get_workflow(
    conn: asyncpg.Connection | asyncpg.Pool,
    ref: str,
    user_id: str | None = None,
    team_id: str = "",
) -> Record | None:
    """The workflow by id or slug, if the caller (`user_id`, `team_id`; None: anyone)
    may see it."""
    column = "w.id" if ref.startswith("wf_") else "w.slug"
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} WHERE {_VISIBLE} AND {column} = $3", user_id, team_id, ref
    )


async def list_workflows(
    pool: asyncpg.Pool,
    user_id: str | None,
    team_id: str,
    allowlist: list[str] | None,
    limit: int,
    starting_after: str,
) -> list[Record]:
    """Up to `limit` workflows the caller may see, by id after the cursor, restricted to
    `allowlist` if given."""
    return await pool.fetch(
        f"SELECT {_COLUMNS} {_FROM} WHERE {_VISIBLE}"
        " AND ($3::text[] IS NULL OR w.id = ANY($3)) AND w.id > $4 ORDER BY w.id LIMIT $5",
        user_id,
        team_id,
        allowlist,
        starting_after,
        limit,
    )


async def get_version(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str, version: int
) -> Record | None:
    """One stored definition of the workflow (a published version, or a pinned draft)."""
    return await conn.fetchrow(
        "SELECT * FROM workflow_versions WHERE workflow_id = $1 AND version = $2",
        workflow_id,
        version,
    )


async def list_versions(pool: asyncpg.Pool, workflow_id: str) -> list[Record]:
    """The published versions, newest first."""
    return await pool.fetch(
        "SELECT * FROM workflow_versions WHERE workflow_id = $1 AND version > 0"
        " ORDER BY version DESC",
        workflow_id,
    )


async def create_workflow(
    pool: asyncpg.Pool,
    definition: dict[str, Any],
    owner_user_id: str,
    owner_team_id: str,
) -> Record:
    """A new workflow holding `definition` as its draft (nothing published yet)."""
    async with pool.acquire() as conn, conn.transaction():
        await _claim_slug(conn, definition["slug"], definition["id"])
        await conn.execute(
            "INSERT INTO workflows (id, slug, name, description, current_version, owner_user_id,"
            " owner_team_id, draft, draft_revision, draft_updated_at)"
            " VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 1, now())",
            definition["id"],
            definition["slug"],
            definition["name"],
            definition["description"],
            owner_user_id or None,
            owner_team_id or None,
            definition,
        )
        row = await get_workflow(conn, definition["id"])
    assert row is not None
    return row


async def save_draft(pool: asyncpg.Pool, workflow_id: str, definition: dict[str, Any]) -> Record:
    """Replace the workflow's draft (a new draft revision); its slug may change."""
    async with pool.acquire() as conn, conn.transaction():
        await _claim_slug(conn, definition["slug"], workflow_id)
        await conn.execute(
            "UPDATE workflows SET draft = $2, draft_revision = draft_revision + 1,"
            " draft_updated_at = now(), slug = $3, name = $4, description = $5,"
            " updated_at = now() WHERE id = $1",
            workflow_id,
            definition,
            definition["slug"],
            definition["name"],
            definition["description"],
        )
        row = await get_workflow(conn, workflow_id)
    assert row is not None
    return row


async def publish(
    pool: asyncpg.Pool, workflow_id: str, definition: dict[str, Any], user_id: str, note: str
) -> Record:
    """Freeze `definition` (the draft) as the next version; answers the version row."""
    async with pool.acquire() as conn, conn.transaction():
        version = await conn.fetchval(
            "UPDATE workflows SET current_version = current_version + 1, draft = NULL,"
            " updated_at = now() WHERE id = $1 RETURNING current_version",
            workflow_id,
        )
        row = await conn.fetchrow(
            "INSERT INTO workflow_versions (workflow_id, version, definition, published_by, note)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            workflow_id,
            version,
            definition,
            user_id or None,
            note,
        )
    assert row is not None
    return row


async def pin_draft(conn: asyncpg.Connection | asyncpg.Pool, row: Record) -> int:
    """The version number under which a run of the workflow's current draft runs
    (-<draft revision>), stored once per revision."""
    version = -int(row["draft_revision"])
    await conn.execute(
        "INSERT INTO workflow_versions (workflow_id, version, definition) VALUES ($1, $2, $3)"
        " ON CONFLICT (workflow_id, version) DO NOTHING",
        row["id"],
        version,
        row["draft"],
    )
    return version


async def archive(pool: asyncpg.Pool, workflow_id: str) -> Record:
    """Archived: no new runs; its runs and versions stay readable."""
    await pool.execute(
        "UPDATE workflows SET archived_at = coalesce(archived_at, now()), updated_at = now()"
        " WHERE id = $1",
        workflow_id,
    )
    row = await get_workflow(pool, workflow_id)
    assert row is not None
    return row


async def delete_workflow(pool: asyncpg.Pool, workflow_id: str) -> bool:
    """Delete a workflow that never ran (operators); False when it has runs (archive it)."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM runs WHERE workflow_id = $1 LIMIT 1", workflow_id):
            return False
        await conn.execute("DELETE FROM workflow_versions WHERE workflow_id = $1", workflow_id)
        done = await conn.execute("DELETE FROM workflows WHERE id = $1", workflow_id)
    return bool(done == "DELETE 1")


async def _claim_slug(conn: asyncpg.Connection, slug: str, workflow_id: str) -> None:
    # Serialise writers of one slug (the unique index would answer a bare error).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('slug:' || $1))", slug)
    other = await conn.fetchval("SELECT id FROM workflows WHERE slug = $1", slug)
    if other is not None and other != workflow_id:
        raise SlugTaken(slug, other)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


async def apply_workflow(
    pool: asyncpg.Pool, definition: dict[str, Any], owner_user_id: str = "", owner_team_id: str = ""
) -> AppliedWorkflow:
    """Operators: create the workflow (the catalog's unless an owner is given), or
    publish a version when the definition changed (matched by id; slug changes are
    allowed); a given owner replaces the old one. SlugTaken when another workflow has
    the slug."""
    wf_id = definition["id"]
    async with pool.acquire() as conn, conn.transaction():
        # Serialise concurrent applies of one workflow (row may not exist yet).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", wf_id)
        await _claim_slug(conn, definition["slug"], wf_id)
        current = await get_workflow(conn, wf_id)
        if owner_user_id or owner_team_id:
            await conn.execute(
                "UPDATE workflows SET owner_user_id = $2, owner_team_id = $3 WHERE id = $1",
                wf_id,
                owner_user_id or None,
                owner_team_id or None,
            )
        if current is not None and _same(current["definition"], definition):
            row = await get_workflow(conn, wf_id)
            assert row is not None
            return AppliedWorkflow(row, definition, changed=False)
        version = 1 if current is None else current["current_version"] + 1
        if current is None:
            await conn.execute(
                "INSERT INTO workflows (id, slug, name, description, current_version,"
                " owner_user_id, owner_team_id) VALUES ($1, $2, $3, $4, 0, $5, $6)",
                wf_id,
                definition["slug"],
                definition["name"],
                definition["description"],
                owner_user_id or None,
                owner_team_id or None,
            )
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, definition) VALUES ($1, $2, $3)",
            wf_id,
            version,
            definition,
        )
        await conn.execute(
            "UPDATE workflows SET slug = $2, name = $3, description = $4, current_version = $5,"
            " draft = NULL, updated_at = now() WHERE id = $1",
            wf_id,
            definition["slug"],
            definition["name"],
            definition["description"],
            version,
        )
        row = await get_workflow(conn, wf_id)
        assert row is not None
        return AppliedWorkflow(row, definition, changed=True)
