"""timeout_seconds through the whole stack: per workflow and per call, capped by the
operator's maximum; a run past it fails with TIMEOUT, its running stage stopped (the
fake LLM made slow), its reservation released; a run waiting for input times out too
(recovery ends it, as no worker holds it)."""

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.billing import Stub
from tests.support.runs import (
    Account,
    apply_workflow,
    create_run,
    event_types,
    runs_db,
    wait_for,
)
from weft.billing.v1 import billing_pb2 as pb

SLOW = f"[[tag:timeout-{uuid.uuid4().hex[:8]}]] [[sleep:45]] {{{{ input_text }}}}"
SLOW_STAGES: list[dict[str, Any]] = [
    {"id": "slow", "type": "llm", "model": "fake:echo", "prompt": SLOW, "max_tokens": 50},
    {"id": "after", "type": "template", "template": "never {{ stages.slow }}"},
]


async def post_run(
    http: aiohttp.ClientSession, stack: Stack, who: Account, workflow_id: str, body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs", json=body, headers=who.headers
    ) as response:
        return response.status, dict(await response.json())


async def ledger_kinds(billing: Stub, account: str, run_id: str) -> list[str]:
    reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=account, limit=1000))
    return sorted(e.kind for e in reply.entries if e.run_id == run_id)


async def wait_settled(billing: Stub, account: str, run_id: str) -> list[str]:
    """The run's ledger entries once billing captured it (bounded by a hang guard)."""
    for _ in range(300):
        kinds = await ledger_kinds(billing, account, run_id)
        if "capture" in kinds:
            return kinds
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} was never captured")


async def test_a_workflow_timeout_stops_the_stage_and_releases_the_reservation(
    stack: Stack, http: aiohttp.ClientSession, account: Account, billing: Stub
) -> None:
    workflow_id = await apply_workflow(stack, SLOW_STAGES, timeout_seconds=2)
    run = await create_run(http, stack, account, workflow_id, "slowly")
    # The fake model answers after 45 s: a failure well before that is the timeout's.
    done = await wait_for(http, stack, account, run["id"], timeout=30)
    assert done["status"] == "failed", done
    assert done["timeout_seconds"] == 2
    assert done["error"]["code"] == "TIMEOUT" and done["error"]["stage"] == "slow", done
    assert "2 seconds" in done["error"]["message"]
    assert done["result"] is None and done["cost_cents"] == 0
    assert [c["stage"] for c in done["cost_breakdown"]] == ["slow"]  # "after" never ran

    conn = await runs_db(stack)
    try:
        stages = await conn.fetch(
            "SELECT stage_id, status FROM stage_results WHERE run_id = $1", run["id"]
        )
        events = await event_types(conn, run["id"])
    finally:
        await conn.close()
    assert [(s["stage_id"], s["status"]) for s in stages] == [("slow", "failed")]
    assert events[-1] == ("run.failed", "slow")
    assert ("stage.completed", "slow") not in events

    # Billing captured nothing and released the whole reservation.
    assert await wait_settled(billing, account.user_id, run["id"]) == [
        "capture",
        "release",
        "reserve",
    ]
    reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=account.user_id, limit=1000))
    amounts = {e.kind: e.amount_micros for e in reply.entries if e.run_id == run["id"]}
    assert amounts["capture"] == 0 and amounts["release"] != 0, amounts


async def test_a_call_timeout_replaces_the_workflows_within_the_maximum(
    stack: Stack, http: aiohttp.ClientSession, account: Account
) -> None:
    workflow_id = await apply_workflow(stack, SLOW_STAGES)
    status, created = await post_run(
        http, stack, account, workflow_id, {"input_text": "x", "timeout_seconds": 1}
    )
    assert status == 201, created
    done = await wait_for(http, stack, account, created["data"]["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "TIMEOUT", done
    assert done["timeout_seconds"] == 1

    # No timeout asked and none declared: the operator's maximum (a day by default).
    quick = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "ok"}])
    run = await create_run(http, stack, account, quick, "x")
    done = await wait_for(http, stack, account, run["id"])
    assert done["status"] == "completed" and done["timeout_seconds"] == 86_400, done


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(86_401, "between 1 and 86,400"), (0, "integer"), ("10", "integer"), (True, "integer")],
)
async def test_bad_timeouts_are_400_naming_the_field(
    stack: Stack, http: aiohttp.ClientSession, account: Account, value: Any, fragment: str
) -> None:
    workflow_id = await apply_workflow(stack, SLOW_STAGES)
    status, answer = await post_run(
        http, stack, account, workflow_id, {"input_text": "x", "timeout_seconds": value}
    )
    assert status == 400, answer
    assert answer["error"]["code"] == "INVALID_PARAM"
    assert answer["error"]["param"] == "timeout_seconds"
    assert fragment in answer["error"]["message"]


async def test_a_run_waiting_for_input_times_out(
    stack: Stack, http: aiohttp.ClientSession, account: Account
) -> None:
    review: list[dict[str, Any]] = [
        {
            "id": "review",
            "type": "human_review",
            "prompt": "ok?",
            "fields": [{"name": "ok", "type": "boolean", "required": True}],
        },
        {"id": "after", "type": "template", "template": "done"},
    ]
    workflow_id = await apply_workflow(stack, review)
    status, created = await post_run(
        http, stack, account, workflow_id, {"input_text": "x", "timeout_seconds": 1}
    )
    assert status == 201, created
    run_id = created["data"]["id"]
    waiting = await wait_for(http, stack, account, run_id, statuses=("awaiting_input", "failed"))
    assert waiting["status"] in ("awaiting_input", "failed"), waiting
    # No worker holds a waiting run: recovery fails it once past its deadline.
    done = await wait_for(http, stack, account, run_id, timeout=60)
    assert done["status"] == "failed", done
    assert done["error"] == {
        "code": "TIMEOUT",
        "message": "The run ran over its timeout of 1 seconds.",
        "stage": "review",
    }
    assert done["human_input_request"] is None
    async with http.post(
        f"{stack.base_url}/api/v1/workflow-runs/{run_id}/input",
        json={"values": {"ok": True}},
        headers=account.headers,
    ) as response:
        assert response.status == 409
