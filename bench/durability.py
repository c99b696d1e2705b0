"""PostgreSQL as production runs it, for every benchmark that starts its own stack.

The dev stack commits with `synchronous_commit=off` (devstack/postgres.py: faster tests;
a crash may lose the last commits). Production keeps PostgreSQL's default, `on`: a
commit returns only once its WAL is flushed to disk. Benchmark figures must be what
users get, so the benchmarks start their stack with `POSTGRES_SETTINGS` and print what
the server says it ran with.
"""

import asyncpg

POSTGRES_SETTINGS: dict[str, str] = {"synchronous_commit": "on", "fsync": "on"}


async def settings_in_effect(dsn: str) -> dict[str, str]:
    """Each of `POSTGRES_SETTINGS` as the server shows it (SHOW). SystemExit when one is
    not what was asked: the figures would not be production's."""
    conn = await asyncpg.connect(dsn)
    try:
        shown = {name: str(await conn.fetchval(f"SHOW {name}")) for name in POSTGRES_SETTINGS}
    finally:
        await conn.close()
    if shown != POSTGRES_SETTINGS:
        raise SystemExit(f"PostgreSQL runs with {shown}, not {POSTGRES_SETTINGS}")
    return shown


def describe(shown: dict[str, str]) -> str:
    """`PostgreSQL (SHOW): synchronous_commit=on, fsync=on`, for the printed summary."""
    return "PostgreSQL (SHOW): " + ", ".join(f"{name}={value}" for name, value in shown.items())
