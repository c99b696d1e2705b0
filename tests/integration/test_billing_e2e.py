"""Billing through the public API: runs reserve on creation, capture what they cost, and
concurrent creations never overspend."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.billing import priced_model
from tests.support.runs import Account, admin_json, apply_workflow, create_user, wait_for
from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc

Stub = billing_pb2_grpc.BillingServiceStub
INSUFFICIENT = re.compile(r"^Insufficient credits\. Estimated cost: \$\d+\.\d\d\.$")


def new_caller(stack: Any, plan: str = "pro", team_id: str | None = None) -> Account:
    caller = create_user(stack, f"bill-{uuid.uuid4().hex[:10]}@example.com", plan)
    if team_id:
        admin_json(stack, "teams", "add-member", "--team", team_id, "--user", caller.user_id)
    return caller


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
async def model(billing: Stub) -> str:
    """A model only this module uses (1,000 input tokens cost one cent)."""
    return await priced_model(billing, "billing-e2e")


async def post_run(
    http: aiohttp.ClientSession, stack: Any, caller: Account, workflow_id: str, text: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": text},
        headers=caller.headers,
    ) as response:
        return response.status, dict(await response.json())


async def ledger(billing: Stub, account: str, run_id: str) -> dict[str, int]:
    reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=account, limit=1000))
    return {e.kind: e.amount_micros for e in reply.entries if e.run_id == run_id}


async def wait_capture(billing: Stub, account: str, run_id: str) -> dict[str, int]:
    deadline = asyncio.get_running_loop().time() + 60
    while "capture" not in (entries := await ledger(billing, account, run_id)):
        assert asyncio.get_running_loop().time() < deadline, f"no capture for {run_id}"
        await asyncio.sleep(0.2)
    return entries


def llm(stage_id: str, model: str, max_tokens: int = 40) -> dict[str, Any]:
    return {
        "id": stage_id,
        "type": "llm",
        "model": model,
        "prompt": "Summarise: {{ input_text }}",
        "max_tokens": max_tokens,
    }


async def test_cost_breakdown_sums_to_cost_cents_and_matches_the_capture(
    stack: Any, billing: Stub, http: aiohttp.ClientSession, model: str
) -> None:
    caller = new_caller(stack)
    await billing.Grant(pb.GrantRequest(account_id=caller.user_id, amount_micros=1_000_000))
    workflow = await apply_workflow(
        stack,
        [
            llm("first", model),
            {"id": "render", "type": "template", "template": "{{ stages.first }}"},
            llm("second", model),
        ],
    )
    status, body = await post_run(http, stack, caller, workflow, "one two three " * 200)
    assert status == 201, body
    run = await wait_for(http, stack, caller, body["data"]["id"], timeout=120)
    assert run["status"] == "completed", run

    breakdown = run["cost_breakdown"]
    assert [s["stage"] for s in breakdown] == ["first", "render", "second"]
    assert all(s["cost_cents"] > 0 for s in breakdown if s["type"] == "llm")
    assert run["cost_cents"] == sum(s["cost_cents"] for s in breakdown)
    entries = await wait_capture(billing, caller.user_id, run["id"])
    assert entries["capture"] == run["cost_cents"] * 10_000
    assert entries["capture"] + entries.get("release", 0) == entries["reserve"]
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=caller.user_id))
    assert balance.balance_micros == 1_000_000 - entries["capture"]
    assert balance.reserved_micros == 0


async def test_100_concurrent_run_creations_with_credits_for_37(
    stack: Any, billing: Stub, http: aiohttp.ClientSession, model: str
) -> None:
    # A review stage first: no run finishes (and frees credits) while the burst is on.
    workflow = await apply_workflow(
        stack,
        [
            {
                "id": "review",
                "type": "human_review",
                "prompt": "Go?",
                "fields": [{"name": "ok", "type": "boolean"}],
            },
            llm("answer", model, max_tokens=500),
        ],
    )
    probe = new_caller(stack)
    await billing.Grant(pb.GrantRequest(account_id=probe.user_id, amount_micros=1_000_000))
    status, body = await post_run(http, stack, probe, workflow, "estimate me")
    assert status == 201, body
    estimate = (await ledger(billing, probe.user_id, body["data"]["id"]))["reserve"]
    assert estimate > 0

    caller = new_caller(stack)
    await billing.Grant(pb.GrantRequest(account_id=caller.user_id, amount_micros=37 * estimate))
    results = await asyncio.gather(
        *(post_run(http, stack, caller, workflow, "estimate me") for _ in range(100))
    )

    statuses = [s for s, _ in results]
    assert statuses.count(201) == 37, statuses
    assert statuses.count(402) == 63, statuses
    refusals = {b["error"]["code"] for s, b in results if s == 402}
    assert refusals == {"INSUFFICIENT_CREDITS"}
    message = next(b["error"]["message"] for s, b in results if s == 402)
    assert INSUFFICIENT.match(message), message
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=caller.user_id))
    assert (balance.balance_micros, balance.reserved_micros, balance.available_micros) == (
        37 * estimate,
        37 * estimate,
        0,
    )
    # Canceling gives every reserved credit back (nothing ran).
    for _, body in results:
        if "data" in body:
            async with http.post(
                f"{stack.base_url}/api/v1/workflow-runs/{body['data']['id']}/cancel",
                headers=caller.headers,
            ) as response:
                assert response.status == 200, await response.text()
    deadline = asyncio.get_running_loop().time() + 60
    while (
        await billing.GetBalance(pb.GetBalanceRequest(account_id=caller.user_id))
    ).reserved_micros:
        assert asyncio.get_running_loop().time() < deadline, "cancels never released"
        await asyncio.sleep(0.2)
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=caller.user_id))
    assert balance.balance_micros == 37 * estimate
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok


async def test_plans_and_team_allocations_through_the_api(
    stack: Any, billing: Stub, http: aiohttp.ClientSession, model: str
) -> None:
    workflow = await apply_workflow(stack, [llm("answer", model, max_tokens=500)])
    free = new_caller(stack, plan="free")
    status, body = await post_run(http, stack, free, workflow, "hi")
    assert (status, body["error"]["code"]) == (402, "PAID_PLAN_REQUIRED")

    team = admin_json(stack, "teams", "create", "--name", f"t-{uuid.uuid4().hex[:6]}")
    member = new_caller(stack, plan="team", team_id=team["id"])
    await billing.Grant(pb.GrantRequest(account_id=team["id"], amount_micros=10_000_000))
    status, body = await post_run(http, stack, member, workflow, "hi")
    assert (status, body["error"]["code"]) == (403, "NO_ALLOCATION")

    admin_json(
        stack, "allocations", "set", "--team", team["id"], "--user", member.user_id,
        "--monthly-usd", "0.01",
    )  # fmt: skip
    status, body = await post_run(http, stack, member, workflow, "hi")
    # 500 max output tokens at 20 USD/Mtok alone is a cent: more than the allocation left.
    assert (status, body["error"]["code"]) == (402, "INSUFFICIENT_CREDITS"), body
    assert INSUFFICIENT.match(body["error"]["message"])

    admin_json(
        stack, "allocations", "set", "--team", team["id"], "--user", member.user_id,
        "--monthly-usd", "1",
    )  # fmt: skip
    status, body = await post_run(http, stack, member, workflow, "hi")
    assert status == 201, body
    run = await wait_for(http, stack, member, body["data"]["id"], timeout=120)
    entries = await wait_capture(billing, team["id"], run["id"])
    assert entries["capture"] == run["cost_cents"] * 10_000
    own = await billing.GetBalance(pb.GetBalanceRequest(account_id=member.user_id))
    assert own.balance_micros == 0
