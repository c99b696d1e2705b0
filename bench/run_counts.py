"""What became of a benchmark's runs, read from the runs schema in PostgreSQL (and from
the fake LLM server): every run terminal, none lost, none executed twice."""

import asyncio
import json
import time
import urllib.request
from typing import Any

import asyncpg

TERMINAL = ("completed", "failed", "canceled")


async def wait_drained(dsn: str, user_ids: list[str], timeout: float) -> float:
    """Wait until the users' runs are all terminal; the seconds it took."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "runs"})
    try:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            open_runs = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE user_id = ANY($1) AND status <> ALL($2)",
                user_ids,
                list(TERMINAL),
            )
            if open_runs == 0:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - began
    finally:
        await conn.close()


async def count_runs(dsn: str, user_ids: list[str]) -> dict[str, Any]:
    """The users' runs by status, and any run executed twice: two terminal events, or a
    stage completed twice (its `stage.completed` event: stage_results' primary key would
    refuse a second row, so only the events can show a second execution)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "runs"})
    try:
        # Fresh statistics, or the planner may join the two big tables the slow way.
        await conn.execute("ANALYZE runs, run_events")
        by_status = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM runs WHERE user_id = ANY($1) GROUP BY status",
                user_ids,
            )
        )
        dup_terminal = await conn.fetchval(
            "SELECT count(*) FROM (SELECT e.run_id FROM run_events e JOIN runs r ON r.id = e.run_id"
            " WHERE r.user_id = ANY($1) AND e.type IN ('run.completed', 'run.failed')"
            " GROUP BY e.run_id HAVING count(*) > 1) d",
            user_ids,
        )
        dup_stages = await conn.fetchval(
            "SELECT count(DISTINCT run_id) FROM (SELECT e.run_id FROM run_events e JOIN runs r"
            " ON r.id = e.run_id WHERE r.user_id = ANY($1) AND e.type = 'stage.completed'"
            " GROUP BY e.run_id, e.stage HAVING count(*) > 1) d",
            user_ids,
        )
        return {
            "runs_in_db": sum(by_status.values()),
            "by_status": by_status,
            "runs_with_duplicate_terminal_event": dup_terminal,
            "runs_with_a_stage_completed_twice": dup_stages,
        }
    finally:
        await conn.close()


def llm_calls(fake_llm_url: str) -> int:
    """Chat completions the fake LLM server answered so far (its GET /stats)."""
    with urllib.request.urlopen(f"{fake_llm_url}/stats", timeout=10) as response:
        return int(json.loads(response.read())["total"])
