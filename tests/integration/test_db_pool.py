"""weftcore.db.create_pool against the stack's Postgres: `custom_plans` keeps Postgres
from settling on a generic plan for a pool's prepared statements."""

from typing import Any

from weftcore.db import create_pool

# The shape of the worker's lock query, on a table as small as `runs` is after a deploy.
_LOCK = "SELECT * FROM jobs_seen WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_PLANS = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1"


async def plans_after(stack: Any, custom_plans: bool, executions: int = 12) -> tuple[int, int]:
    """(generic, custom) plans Postgres made for the statement on one pooled connection,
    after `executions` executions."""
    pool = await create_pool(stack.dsn, "runs", min_size=1, max_size=1, custom_plans=custom_plans)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE jobs_seen (id text PRIMARY KEY)")
            for _ in range(executions):
                async with conn.transaction():
                    await conn.fetch(_LOCK, [f"run_{i}" for i in range(50)])  # a batch
            row = await conn.fetchrow(_PLANS, _LOCK)
    finally:
        await pool.close()
    assert row is not None
    return int(row["generic_plans"]), int(row["custom_plans"])


async def test_custom_plans_plans_every_execution_for_its_parameters(stack: Any) -> None:
    assert await plans_after(stack, custom_plans=True) == (0, 12)


async def test_by_default_postgres_settles_on_a_generic_plan(stack: Any) -> None:
    # What the option is for: after five custom plans Postgres keeps a generic one,
    # made for the table as it is now, for the connection's life.
    generic, custom = await plans_after(stack, custom_plans=False)
    assert (generic, custom) == (7, 5)
