"""Billing after a load of priced runs: every finished run captured exactly once, at its
cost, and nothing left held. Read straight from the runs and billing schemas (one
database), plus the ledger check operators run (`weft-admin credits check`)."""

import asyncio
import json
import time
from typing import Any

import asyncpg

from devstack.stack import Stack

# Reservations of the accounts still open although their run committed. A reservation
# without a run (a creation that failed after reserving) stays open until billing's
# sweeper releases it after its TTL, so it is counted apart, not waited for.
_OPEN_WITH_RUN = """
SELECT count(*) FROM billing.reservations res
WHERE res.account_id = ANY($1) AND res.status = 'open'
  AND EXISTS (SELECT 1 FROM runs.runs r WHERE r.id = res.run_id)
"""

# Per run of the users: how many capture entries the ledger holds, and whether their
# sum is the run's own cost. The ledger's unique (run_id, kind) index should make a
# second capture impossible; counting them checks that rather than assuming it.
_CAPTURES_PER_RUN = """
WITH mine AS (
    SELECT id, status, cost_micros FROM runs.runs WHERE user_id = ANY($1)
), caps AS (
    SELECT run_id, count(*) AS n, sum(amount_micros) AS micros FROM billing.ledger
    WHERE account_id = ANY($1) AND kind = 'capture' GROUP BY run_id
)
SELECT
    count(*) FILTER (WHERE m.status IN ('completed', 'failed', 'canceled')) AS terminal,
    count(*) FILTER (WHERE m.status = 'completed') AS completed,
    count(*) FILTER (WHERE m.status = 'completed' AND c.n = 1) AS completed_captured_once,
    count(*) FILTER (WHERE c.n IS NULL) AS runs_without_capture,
    count(*) FILTER (WHERE c.n > 1) AS runs_captured_more_than_once,
    count(*) FILTER (WHERE c.n = 1 AND c.micros <> m.cost_micros) AS captures_not_the_run_cost,
    coalesce(sum(c.micros), 0)::bigint AS captured_micros
FROM mine m LEFT JOIN caps c ON c.run_id = m.id
"""

_RESERVATIONS = """
SELECT
    count(*) FILTER (WHERE res.status = 'open') AS open_reservations,
    count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM runs.runs r WHERE r.id = res.run_id))
        AS reservations_without_run
FROM billing.reservations res WHERE res.account_id = ANY($1)
"""


async def wait_captured(dsn: str, account_ids: list[str], timeout: float) -> float:
    """Wait until no reservation of a committed run of the accounts is open (billing
    captures from the runs' terminal events, after the runs finished); the seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if await conn.fetchval(_OPEN_WITH_RUN, account_ids) == 0:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - began
    finally:
        await conn.close()


async def check_captures(dsn: str, user_ids: list[str]) -> dict[str, Any]:
    """Captures per run and reservations left, for the users (each pays for itself)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE billing.ledger, billing.reservations")
        captures = await conn.fetchrow(_CAPTURES_PER_RUN, user_ids)
        reservations = await conn.fetchrow(_RESERVATIONS, user_ids)
        return {**dict(captures), **dict(reservations)}
    finally:
        await conn.close()


def captured_exactly_once(billing: dict[str, Any]) -> bool:
    """Every completed run captured once at its cost, every run captured, none twice,
    nothing held."""
    return (
        billing["completed_captured_once"] == billing["completed"]
        and billing["runs_without_capture"] == 0
        and billing["runs_captured_more_than_once"] == 0
        and billing["captures_not_the_run_cost"] == 0
        and billing["open_reservations"] == 0
    )


def credits_check(stack: Stack) -> dict[str, Any]:
    """`weft-admin credits check` (every account's cached balance and reservations
    against its ledger): its exit code and what it printed."""
    done = stack.admin("credits", "check", check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {"unreadable_output": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    return {"exit_code": done.returncode, **report}
