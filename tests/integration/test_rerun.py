"""POST /workflow-runs/:id/rerun through the whole stack: a new run linked to the
original, the stages before from_stage copied (not executed, not billed), idempotent,
and the refusals (a run still going, an unknown stage, someone else's run)."""

import uuid
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    create_run,
    fake_llm_calls,
    wait_for,
)

TAG = f"rerun-{uuid.uuid4().hex[:8]}"
STAGES = [
    {
        "id": "draft",
        "type": "llm",
        "model": "fake:echo",
        "prompt": f"[[tag:{TAG}]] draft {{{{ input_text }}}}",
    },
    {"id": "wrap", "type": "template", "template": "[{{ stages.draft }}] {{ input_text }}"},
]


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_account(stack)


async def rerun(
    http: aiohttp.ClientSession,
    stack: Stack,
    who: Account,
    run_id: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> tuple[int, dict[str, Any], Any]:
    headers = dict(who.headers)
    if key:
        headers["Idempotency-Key"] = key
    async with http.post(
        f"{stack.base_url}/api/v1/workflow-runs/{run_id}/rerun", json=body or {}, headers=headers
    ) as response:
        return response.status, await response.json(), response.headers


async def test_a_rerun_from_a_stage_reuses_the_stages_before_it(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    workflow_id = await apply_workflow(stack, STAGES)
    original = await create_run(http, stack, owner, workflow_id, "first")
    done = await wait_for(http, stack, owner, original["id"])
    assert done["status"] == "completed", done
    calls_before = (await fake_llm_calls(stack)).get(TAG, 0)
    assert calls_before == 1

    key = f"rerun-{uuid.uuid4().hex}"
    status, created, _ = await rerun(
        http, stack, owner, original["id"], {"from_stage": "wrap", "input_text": "second"}, key
    )
    assert status == 201, created
    again = await wait_for(http, stack, owner, created["data"]["id"])
    assert again["status"] == "completed", again
    assert again["rerun_of"] == original["id"]
    # The draft was copied (the model was not called again), the wrap ran on the new input.
    assert again["result"] == done["result"].removesuffix("first") + "second"
    assert (await fake_llm_calls(stack)).get(TAG, 0) == calls_before
    costs = {c["stage"]: c for c in again["cost_breakdown"]}
    assert costs["draft"]["cost_cents"] == 0 and costs["draft"]["input_tokens"] == 0
    assert again["cost_cents"] == 0  # billed only for what it executed: a template

    # The same key replays the same rerun.
    status, replayed, headers = await rerun(
        http, stack, owner, original["id"], {"from_stage": "wrap", "input_text": "second"}, key
    )
    assert status == 201 and replayed["data"]["id"] == created["data"]["id"]
    assert headers.get("Idempotent-Replayed") == "true"

    # Without from_stage every stage runs again, on the original's input.
    status, full, _ = await rerun(http, stack, owner, original["id"])
    assert status == 201, full
    whole = await wait_for(http, stack, owner, full["data"]["id"])
    assert whole["result"] == done["result"] and whole["rerun_of"] == original["id"]
    assert (await fake_llm_calls(stack)).get(TAG, 0) == calls_before + 1


async def test_what_cannot_be_rerun(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
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
    waiting = await create_run(http, stack, owner, workflow_id, "x")
    run = await wait_for(http, stack, owner, waiting["id"], statuses=("awaiting_input",))
    assert run["status"] == "awaiting_input", run
    status, answer, _ = await rerun(http, stack, owner, waiting["id"])
    assert status == 409 and answer["error"]["code"] == "RUN_NOT_FINISHED", answer

    async with http.post(
        f"{stack.base_url}/api/v1/workflow-runs/{waiting['id']}/cancel", headers=owner.headers
    ) as response:
        assert response.status == 200
    status, answer, _ = await rerun(http, stack, owner, waiting["id"], {"from_stage": "nope"})
    assert status == 400 and answer["error"]["param"] == "from_stage", answer
    status, answer, _ = await rerun(http, stack, owner, waiting["id"], {"from_stage": "after"})
    assert status == 409 and answer["error"]["code"] == "RERUN_STAGE_NOT_COMPLETED", answer
    status, answer, _ = await rerun(http, stack, owner, waiting["id"], {"colour": "red"})
    assert status == 400 and answer["error"]["param"] == "colour"

    stranger = create_account(stack)
    status, answer, _ = await rerun(http, stack, stranger, waiting["id"])
    assert status == 404, answer
    status, answer, _ = await rerun(http, stack, owner, "run_doesnotexist")
    assert status == 404, answer
