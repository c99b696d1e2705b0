"""A worker killed with SIGKILL mid-run: the run still completes, each stage counted once."""

import asyncio
import os
import signal
import uuid
from typing import Any

import aiohttp
import pytest

from tests.support.runs import (
    apply_workflow,
    create_account,
    create_run,
    event_types,
    fake_llm_calls,
    runs_db,
    wait_for,
    wait_stage_running,
)

pytestmark = pytest.mark.timeout(240)


async def test_sigkilled_worker_run_resumes_and_counts_each_stage_once(stack: Any) -> None:
    account = create_account(stack)
    t = uuid.uuid4().hex[:10]
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "first",
                "type": "llm",
                "model": "fake:echo",
                "prompt": f"[[tag:{t}-first]] [[reply:one two three]]",
            },
            {
                "id": "slow",
                "type": "llm",
                "model": "fake:echo",
                "prompt": f"[[tag:{t}-slow]] [[sleep:3]] [[reply:after {{{{ stages.first }}}}]]",
            },
            {"id": "last", "type": "template", "template": "{{ stages.slow }}!"},
        ],
    )
    conn = await runs_db(stack)
    async with aiohttp.ClientSession() as http:
        try:
            created = await create_run(http, stack, account, workflow_id)
            run_id = created["id"]
            # Kill while "slow" is in flight: "first" is persisted, "slow" is claimed.
            await wait_stage_running(conn, run_id, "slow")
            os.kill(stack.processes["worker"].pid, signal.SIGKILL)
            await asyncio.to_thread(stack.stop, "worker")  # reaps the dead process
            await asyncio.to_thread(stack.start, "worker")

            run = await wait_for(http, stack, account, run_id, timeout=90)
            events = await event_types(conn, run_id)
            rows = await conn.fetch(
                "SELECT stage_id, status, cost_micros, input_tokens, output_tokens "
                "FROM stage_results WHERE run_id = $1 ORDER BY stage_index",
                run_id,
            )
            total = await conn.fetchval("SELECT cost_micros FROM runs WHERE id = $1", run_id)
        finally:
            await conn.close()

    assert run["status"] == "completed", run
    assert run["result"] == "after one two three!"
    assert [(r["stage_id"], r["status"]) for r in rows] == [
        ("first", "completed"),
        ("slow", "completed"),
        ("last", "completed"),
    ]
    # Each stage's cost once: the run's total is exactly the sum of its three stages.
    costs = {r["stage_id"]: r["cost_micros"] for r in rows}
    assert costs["first"] > 0 and costs["slow"] > 0 and costs["last"] == 0
    assert total == sum(costs.values())
    assert [c["stage"] for c in run["cost_breakdown"]] == ["first", "slow", "last"]
    # "first" finished before the kill and was not called again; "slow" ran twice
    # (the killed attempt never completed, so it is not counted).
    calls = await fake_llm_calls(stack)
    assert calls[f"{t}-first"] == 1
    assert calls[f"{t}-slow"] == 2
    completed = [stage for kind, stage in events if kind == "stage.completed"]
    assert completed == ["first", "slow", "last"]
    assert [kind for kind, _ in events].count("run.completed") == 1
    assert [kind for kind, _ in events].count("run.started") == 1


async def test_sigterm_finishes_the_current_stage_then_another_worker_resumes(
    stack: Any,
) -> None:
    account = create_account(stack)
    t = uuid.uuid4().hex[:10]
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "slow",
                "type": "llm",
                "model": "fake:echo",
                "prompt": f"[[tag:{t}-slow]] [[sleep:2]] [[reply:done]]",
            },
            {"id": "last", "type": "template", "template": "{{ stages.slow }}."},
        ],
    )
    conn = await runs_db(stack)
    async with aiohttp.ClientSession() as http:
        try:
            created = await create_run(http, stack, account, workflow_id)
            run_id = created["id"]
            await wait_stage_running(conn, run_id, "slow")
            # Graceful stop (grace 5 s in the test stack): "slow" completes, then the run
            # is released instead of being cut off.
            await asyncio.to_thread(stack.stop, "worker")
            slow = await conn.fetchval(
                "SELECT status FROM stage_results WHERE run_id = $1 AND stage_id = 'slow'", run_id
            )
            owner = await conn.fetchval("SELECT worker_id FROM runs WHERE id = $1", run_id)
            await asyncio.to_thread(stack.start, "worker")
            run = await wait_for(http, stack, account, run_id, timeout=60)
        finally:
            await conn.close()
    assert slow == "completed" and owner is None
    assert run["status"] == "completed" and run["result"] == "done."
    assert (await fake_llm_calls(stack))[f"{t}-slow"] == 1
