"""asyncpg pools confined to one service's schema, and per-service SQL migrations."""

import json
import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Any number to serialise migrations of one schema across replicas starting together.
_MIGRATION_LOCK_BASE = 0x5EF7_0000


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _rollback_only(conn: asyncpg.Connection) -> None:
    """Pool reset without a round trip: asyncpg still rolls back an open transaction and
    drops listeners; no session state (SET, LISTEN, session advisory lock) to undo."""


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    light_reset: bool = False,
    custom_plans: bool = False,
) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (the service's own tables).

    `light_reset`: skip asyncpg's per-release reset query (RESET ALL, UNLISTEN *, ...),
    one round trip per acquire, for services that never change session state on pooled
    connections.

    `custom_plans`: plan every execution of a prepared statement for its parameters.
    asyncpg prepares each statement once per connection and Postgres may then keep a
    generic plan made while a table was small: a sequential scan that stays in use
    as the table grows, until the next ANALYZE. For pools whose statements work on
    batches, where planning is cheap next to executing."""
    settings = {"search_path": schema, "application_name": f"weft-{schema}"}
    if custom_plans:
        settings["plan_cache_mode"] = "force_custom_plan"
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=settings,
        init=_init_connection,
        command_timeout=30,
        reset=_rollback_only if light_reset else None,
    )
    assert pool is not None
    return pool


async def migrate(dsn: str, schema: str, migrations_dir: Path) -> list[str]:
    """Apply the service's `NNNN_name.sql` files not yet recorded, each in its own transaction."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        lock_id = _MIGRATION_LOCK_BASE + sum(schema.encode())
        await conn.execute("SELECT pg_advisory_lock($1)", lock_id)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for path in sorted(migrations_dir.glob("*.sql")):
                if path.stem in done:
                    continue
                sql = path.read_text()
                async with conn.transaction():
                    if _has_statements(sql):
                        await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", path.stem
                    )
                applied.append(path.stem)
                log.info("applied migration", extra={"schema": schema, "version": path.stem})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
    finally:
        await conn.close()
    return applied


def _has_statements(sql: str) -> bool:
    # A comment-only file is a valid (empty) migration, but the server answers it with
    # an empty query response that asyncpg cannot decode.
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


async def ping(pool: asyncpg.Pool, timeout: float = 1.0) -> bool:
    try:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)
        return True
    except Exception:
        return False
