"""Idempotency-Key on run creation through the public API (spec/API.md, Idempotency):
replay with Idempotent-Replayed, 409s, canonical bodies, which answers are stored, and
exactly one run under 200 concurrent POSTs with one key."""

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.support.runs import Account, apply_workflow, create_account, runs_db

STAGES = [{"id": "echo", "type": "template", "template": "{{ input_text }}"}]


@pytest.fixture(scope="module")
async def workflow(stack: Any) -> str:
    return await apply_workflow(stack, STAGES)


async def post(
    http: aiohttp.ClientSession,
    stack: Any,
    account: Account,
    workflow_id: str,
    body: Any,
    key: str | None,
    raw: str | None = None,
) -> tuple[int, Any, Any]:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
    if raw is not None:
        headers["Content-Type"] = "application/json"
        request = http.post(url, data=raw, headers=headers)
    else:
        request = http.post(url, json=body, headers=headers)
    async with request as response:
        return response.status, await response.json(), response.headers


async def run_count(stack: Any, user_id: str) -> int:
    conn = await runs_db(stack)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", user_id))
    finally:
        await conn.close()


async def test_a_retry_replays_the_original_answer(
    stack: Any, workflow: str, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)
    key = f"order-{uuid.uuid4()}"
    status, first, headers = await post(http, stack, account, workflow, {"input_text": "a"}, key)
    assert status == 201, first
    assert "Idempotent-Replayed" not in headers
    status, again, headers = await post(http, stack, account, workflow, {"input_text": "a"}, key)
    assert status == 201
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"
    # Canonical comparison: same parsed body, other key order and whitespace.
    raw = '{ "params" : {},\n "input_text": "b" }'
    key2 = f"order-{uuid.uuid4()}"
    status, one, _ = await post(
        http, stack, account, workflow, {"input_text": "b", "params": {}}, key2
    )
    assert status == 201, one
    status, two, headers = await post(http, stack, account, workflow, None, key2, raw=raw)
    assert (status, two["data"]["id"]) == (201, one["data"]["id"])
    assert headers["Idempotent-Replayed"] == "true"
    assert await run_count(stack, account.user_id) == 2


async def test_a_reused_key_with_another_body_or_path_is_409(
    stack: Any, workflow: str, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)
    other_workflow = await apply_workflow(stack, STAGES)
    key = f"k-{uuid.uuid4()}"
    status, _, _ = await post(http, stack, account, workflow, {"input_text": "a"}, key)
    assert status == 201
    for wf, body in [(workflow, {"input_text": "changed"}), (other_workflow, {"input_text": "a"})]:
        status, error, _ = await post(http, stack, account, wf, body, key)
        assert status == 409, error
        assert error["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Keys belong to an account: someone else's identical key is a new request.
    stranger = create_account(stack)
    status, _, headers = await post(http, stack, stranger, workflow, {"input_text": "x"}, key)
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert await run_count(stack, account.user_id) == 1


async def test_refused_requests_are_not_stored(
    stack: Any, workflow: str, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)
    key = f"k-{uuid.uuid4()}"
    status, error, _ = await post(http, stack, account, workflow, {"params": {}}, key)
    assert status == 400, error
    status, error, _ = await post(http, stack, account, "wf_doesnotexist", {"input_text": "a"}, key)
    assert status == 404, error
    # Fixed request, same key: it runs (the 400 and 404 were not stored).
    status, created, headers = await post(http, stack, account, workflow, {"input_text": "a"}, key)
    assert status == 201, created
    assert "Idempotent-Replayed" not in headers


async def test_key_format_is_validated(
    stack: Any, workflow: str, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)
    for bad in ["x" * 257, "tab\there"]:
        status, error, _ = await post(http, stack, account, workflow, {"input_text": "a"}, bad)
        assert status == 400, error
        assert error["error"]["code"] == "INVALID_PARAM"
        assert error["error"]["param"] == "Idempotency-Key"
    status, _, _ = await post(http, stack, account, workflow, {"input_text": "a"}, "x" * 256)
    assert status == 201
    assert await run_count(stack, account.user_id) == 1


async def test_200_concurrent_posts_with_one_key_create_one_run(stack: Any, workflow: str) -> None:
    account = create_account(stack)
    key = f"storm-{uuid.uuid4()}"
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        results = await asyncio.gather(
            *(post(http, stack, account, workflow, {"input_text": "same"}, key) for _ in range(200))
        )
    created = [r for r in results if r[0] == 201 and "Idempotent-Replayed" not in r[2]]
    replayed = [r for r in results if r[0] == 201 and r[2].get("Idempotent-Replayed") == "true"]
    in_flight = [
        r for r in results if r[0] == 409 and r[1]["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
    ]
    others = [r[:2] for r in results if r not in created + replayed + in_flight]
    assert len(created) == 1, json.dumps([r[1] for r in created])
    assert len(created) + len(replayed) + len(in_flight) == 200, others[:3]
    run_id = created[0][1]["data"]["id"]
    assert all(r[1]["data"]["id"] == run_id for r in replayed)
    assert await run_count(stack, account.user_id) == 1
