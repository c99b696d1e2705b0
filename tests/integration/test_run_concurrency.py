"""Concurrency limits and priority through the whole stack: a workflow's
`concurrency_limit` holds its runs beyond it `pending` with a `queue_position`; the
waiting ones start the higher `priority` first; a burst of 500 runs on a workflow
limited to 2 never has more than 2 holding a slot (measured from the runs' recorded
start and end, and by sampling the database while the burst runs)."""

import asyncio
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    create_run,
    get_run,
    runs_db,
    wait_for,
)

ACTIVE = """
SELECT count(*) FILTER (WHERE status IN ('running', 'awaiting_input')) AS active,
       count(*) FILTER (WHERE status = 'pending' AND queued_at IS NOT NULL) AS waiting
FROM runs WHERE workflow_id = $1
"""


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_account(stack)


def llm_stage(prompt: str) -> list[dict[str, Any]]:
    return [{"id": "ask", "type": "llm", "model": "fake:echo", "prompt": prompt, "max_tokens": 20}]


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans [start, end) that overlap at any instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    # At equal instants ends come first (-1 < 1): a run that starts as another ends
    # took the slot it freed.
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


async def test_a_burst_of_500_never_has_more_than_2_running(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    tag = f"burst-{uuid.uuid4().hex[:8]}"
    workflow_id = await apply_workflow(
        stack, llm_stage(f"[[tag:{tag}]] {{{{ input_text }}}}"), concurrency_limit=2
    )
    conn = await runs_db(stack)
    samples: list[int] = []
    waiting: list[int] = []
    burst_done = asyncio.Event()

    async def sample() -> None:
        while not burst_done.is_set():
            row = await conn.fetchrow(ACTIVE, workflow_id)
            samples.append(row["active"])
            waiting.append(row["waiting"])
            await asyncio.sleep(0.01)

    gate = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        async with gate:
            run = await create_run(http, stack, owner, workflow_id, f"item {i}")
            return str(run["id"])

    sampler = asyncio.create_task(sample())
    try:
        ids = await asyncio.gather(*(one(i) for i in range(500)))
        for run_id in ids:
            done = await wait_for(http, stack, owner, run_id, timeout=300)
            assert done["status"] == "completed", done
    finally:
        burst_done.set()
        await sampler
    try:
        rows = await conn.fetch(
            "SELECT started_at, completed_at FROM runs WHERE workflow_id = $1", workflow_id
        )
    finally:
        await conn.close()

    assert len(rows) == 500
    assert most_at_once([(r["started_at"], r["completed_at"]) for r in rows]) == 2
    assert samples and max(samples) <= 2, max(samples)
    assert 2 in samples  # the limit was used, not just never reached
    assert max(waiting) > 100  # most of the burst waited in line


async def test_waiting_runs_show_their_place_and_start_by_priority(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    workflow_id = await apply_workflow(
        stack, llm_stage("[[sleep:3]] {{ input_text }}"), concurrency_limit=1
    )
    first = await create_run(http, stack, owner, workflow_id, "first")
    await wait_for(http, stack, owner, first["id"], statuses=("running",))
    low = await create_run(http, stack, owner, workflow_id, "low", priority=1)
    high = await create_run(http, stack, owner, workflow_id, "high", priority=9)
    await _wait_queued(http, stack, owner, low["id"])
    high_run = await _wait_queued(http, stack, owner, high["id"])
    low_run = await get_run(http, stack, owner, low["id"])
    # Created later, the high-priority run is first in line.
    assert (high_run["queue_position"], high_run["priority"]) == (1, 9), high_run
    assert (low_run["queue_position"], low_run["priority"]) == (2, 1), low_run
    assert low_run["status"] == "pending" and low_run["started_at"] is None

    done = [await wait_for(http, stack, owner, r["id"], timeout=60) for r in (first, low, high)]
    assert [d["status"] for d in done] == ["completed"] * 3, done
    _, low_done, high_done = done
    assert high_done["started_at"] < low_done["started_at"]
    assert high_done["queue_position"] is None and low_done["queue_position"] is None


async def _wait_queued(
    http: aiohttp.ClientSession, stack: Stack, owner: Account, run_id: str
) -> dict[str, Any]:
    for _ in range(200):
        run = await get_run(http, stack, owner, run_id)
        if run["queue_position"] is not None:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never waited in line: {run}")


@pytest.mark.parametrize("value", [-1, 10, "high", 2.5])
async def test_a_bad_priority_is_400_naming_it(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, value: Any
) -> None:
    workflow_id = await apply_workflow(stack, llm_stage("{{ input_text }}"))
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": "x", "priority": value},
        headers=owner.headers,
    ) as response:
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"]["code"] == "INVALID_PARAM" and answer["error"]["param"] == "priority"
