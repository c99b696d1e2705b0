"""Hostile clients against the real stack, at the HTTP edge (issue: hardening).

Each test shows one way a client could reach data it may not see, make the gateway
buffer or hold without bound, leak a token, or get a 5xx for its own bad input."""

from typing import Any

import aiohttp
import pytest

from tests.support.runs import admin_json, apply_workflow, create_account, wait_for

TEMPLATE = [{"id": "echo", "type": "template", "template": "{{ input_text }}"}]
REVIEW = [
    {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "OK?",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
]


@pytest.fixture(scope="module")
async def workflows(stack: Any) -> dict[str, str]:
    return {
        "hidden": await apply_workflow(stack, TEMPLATE),
        "hidden_review": await apply_workflow(stack, REVIEW),
        "allowed": await apply_workflow(stack, TEMPLATE),
    }


# ---- 1. a key's allowlist holds on every run route -----------------------------------


async def test_runs_of_workflows_outside_the_allowlist_do_not_exist(
    stack: Any, workflows: dict[str, str], http: aiohttp.ClientSession
) -> None:
    owner = create_account(stack, "20")
    narrow_key = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        owner.user_id,
        "--name",
        "narrow",
        "--allowlist",
        workflows["allowed"],
    )["secret"]
    narrow = {"Authorization": f"Bearer {narrow_key}"}
    base = f"{stack.base_url}/api/v1"

    async def create(workflow_id: str) -> str:
        async with http.post(
            f"{base}/workflows/{workflow_id}/runs",
            json={"input_text": "hi"},
            headers=owner.headers,
        ) as response:
            assert response.status == 201, await response.text()
            return str((await response.json())["data"]["id"])

    finished = await create(workflows["hidden"])
    waiting = await create(workflows["hidden_review"])
    visible = await create(workflows["allowed"])
    await wait_for(http, stack, owner, finished)
    await wait_for(http, stack, owner, visible)
    await wait_for(http, stack, owner, waiting, ("awaiting_input",))
    # The owner's full key reads the finished run first: the gateway now caches it.
    async with http.get(f"{base}/workflow-runs/{finished}", headers=owner.headers) as r:
        assert r.status == 200

    for run_id in (finished, waiting):
        for method, path, body in (
            ("GET", f"/workflow-runs/{run_id}", None),
            ("GET", f"/workflow-runs/{run_id}?wait=1", None),
            ("GET", f"/workflow-runs/{run_id}/events", None),
            ("POST", f"/workflow-runs/{run_id}/cancel", {}),
            ("POST", f"/workflow-runs/{run_id}/input", {"values": {"approved": True}}),
        ):
            async with http.request(method, base + path, json=body, headers=narrow) as r:
                answer = await r.json()
                assert r.status == 404, (method, path, answer)
                assert answer["error"]["code"] == "NOT_FOUND"
                assert run_id in answer["error"]["message"]

    async with http.get(f"{base}/workflow-runs", headers=narrow) as r:
        listed = [run["id"] for run in (await r.json())["data"]]
    assert listed == [visible]
    for hidden in (workflows["hidden"], workflows["hidden_review"]):
        async with http.get(
            f"{base}/workflow-runs", params={"workflow_id": hidden}, headers=narrow
        ) as r:
            assert r.status == 200 and (await r.json()) == {"data": [], "has_more": False}

    # Nothing was changed through the narrow key: the waiting run still waits.
    async with http.get(f"{base}/workflow-runs/{waiting}", headers=owner.headers) as r:
        assert (await r.json())["data"]["status"] == "awaiting_input"
