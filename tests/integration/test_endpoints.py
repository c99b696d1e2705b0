"""Published endpoints (POST /api/v1/endpoints/:slug) and multipart run creation through
the real stack: flat JSON and multipart bodies, file fields, validation, idempotency."""

import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.runs import Account, apply_workflow, create_account, wait_for

pytestmark = pytest.mark.timeout(120)

FIELDS = [
    {"name": "topic", "type": "text", "required": True},
    {"name": "n", "type": "integer", "default": 2},
    {"name": "loud", "type": "boolean"},
    {"name": "doc", "type": "file"},
]
STAGES = [
    {
        "id": "render",
        "type": "template",
        "output": "json",
        "template": '{{ {"topic": params.topic, "n": params.n, '
        '"loud": params.get("loud"), "doc": params.get("doc"), "input": input_text, '
        '"files": attachments | map(attribute="filename") | list, '
        '"text": attachments_text} | tojson }}',
    }
]


async def endpoint_workflow(stack: Any) -> tuple[str, str]:
    slug = f"ep-{uuid.uuid4().hex[:10]}"
    workflow_id = await apply_workflow(stack, STAGES, slug=slug, fields=FIELDS)
    return workflow_id, slug


def form(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, value)
    for name, (filename, content) in files.items():
        data.add_field(name, content, filename=filename, content_type="text/plain")
    return data


async def post(
    http: aiohttp.ClientSession, url: str, account: Account, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = {**account.headers, **kwargs.pop("headers", {})}
    async with http.post(url, headers=headers, **kwargs) as response:
        return response.status, await response.json(), response.headers


async def test_endpoint_flat_json_creates_a_run_that_completes(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id, slug = await endpoint_workflow(stack)
    status, body, headers = await post(
        http,
        f"{stack.base_url}/api/v1/endpoints/{slug}",
        account,
        json={"topic": "otters", "loud": True},
    )
    assert status == 201, body
    created = body["data"]
    assert created["workflow_id"] == workflow_id and created["status"] == "pending"
    assert created["links"]["self"].endswith(f"/api/v1/workflow-runs/{created['id']}")
    assert "RateLimit-Limit" in headers and "RateLimit-Remaining" in headers
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "completed", run["error"]
    assert run["result"]["topic"] == "otters"
    assert run["result"]["n"] == 2 and run["result"]["loud"] is True
    assert run["result"]["input"] == ""  # the workflow declares no input_text


async def test_endpoint_always_accepts_the_built_in_input_text(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    _, slug = await endpoint_workflow(stack)
    url = f"{stack.base_url}/api/v1/endpoints/{slug}"
    status, body, _ = await post(
        http, url, account, json={"topic": "otters", "input_text": "Say it twice."}
    )
    assert status == 201, body
    run = await wait_for(http, stack, account, body["data"]["id"])
    assert run["result"]["input"] == "Say it twice."
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("topic", "otters")
    form.add_field("input_text", "As a form.")
    status, body, _ = await post(http, url, account, data=form)
    assert status == 201, body
    run = await wait_for(http, stack, account, body["data"]["id"])
    assert run["result"]["input"] == "As a form."


async def test_endpoint_multipart_with_a_file_field_completes(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    _, slug = await endpoint_workflow(stack)
    status, body, _ = await post(
        http,
        f"{stack.base_url}/api/v1/endpoints/{slug}",
        account,
        data=form(
            {"topic": "beavers", "n": "5", "loud": "false"},
            {"doc": ("notes.txt", b"dams are great"), "other": ("more.txt", b"and lodges")},
        ),
    )
    assert status == 201, body
    run = await wait_for(http, stack, account, body["data"]["id"])
    assert run["status"] == "completed", run["error"]
    result = run["result"]
    assert (result["topic"], result["n"], result["loud"]) == ("beavers", 5, False)
    assert result["doc"].startswith("att_")
    assert sorted(result["files"]) == ["more.txt", "notes.txt"]
    assert "dams are great" in result["text"] and "and lodges" in result["text"]


async def test_endpoint_missing_required_field_is_400_naming_it(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    _, slug = await endpoint_workflow(stack)
    url = f"{stack.base_url}/api/v1/endpoints/{slug}"
    status, body, _ = await post(http, url, account, json={"n": 3})
    assert status == 400, body
    assert body["error"]["code"] == "MISSING_PARAM" and body["error"]["param"] == "topic"
    status, body, _ = await post(http, url, account, data=form({"n": "3"}, {}))
    assert status == 400 and body["error"]["param"] == "topic", body
    # Urlencoded forms (what simple HTTP tools send) are read the same way.
    status, body, _ = await post(http, url, account, data={"n": "3"})
    assert status == 400 and body["error"]["param"] == "topic", body
    status, body, _ = await post(http, url, account, data={"topic": "t", "n": "3"})
    assert status == 201, body
    status, body, _ = await post(http, url, account, json={"topic": "x", "n": "many"})
    assert status == 400 and body["error"]["param"] == "n", body
    status, body, _ = await post(http, url, account, json={"topic": "x", "bogus": 1})
    assert status == 400 and body["error"]["param"] == "bogus", body


async def test_endpoint_unknown_slug_and_missing_key(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(
        http,
        f"{stack.base_url}/api/v1/endpoints/no-such-{uuid.uuid4().hex[:6]}",
        account,
        json={"topic": "x"},
    )
    assert status == 404 and body["error"]["code"] == "NOT_FOUND", body
    _, slug = await endpoint_workflow(stack)
    async with http.post(
        f"{stack.base_url}/api/v1/endpoints/{slug}", json={"topic": "x"}
    ) as response:
        assert response.status == 401


async def test_multipart_endpoint_replay_gives_the_same_run(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)  # its own, so its stored files can be counted
    workflow_id, slug = await endpoint_workflow(stack)
    url = f"{stack.base_url}/api/v1/endpoints/{slug}"
    key = {"Idempotency-Key": f"mp-{uuid.uuid4().hex}"}

    def body() -> aiohttp.FormData:
        return form({"topic": "same"}, {"doc": ("a.txt", b"identical bytes")})

    first_status, first, first_headers = await post(http, url, account, data=body(), headers=key)
    assert first_status == 201, first
    assert first_headers.get("Idempotent-Replayed") is None
    again_status, again, again_headers = await post(http, url, account, data=body(), headers=key)
    assert again_status == 201, again
    assert again_headers.get("Idempotent-Replayed") == "true"
    assert again["data"]["id"] == first["data"]["id"]
    # Different file bytes under the same key: a different body.
    other = form({"topic": "same"}, {"doc": ("a.txt", b"other bytes")})
    status, conflict, _ = await post(http, url, account, data=other, headers=key)
    assert status == 409 and conflict["error"]["code"] == "IDEMPOTENCY_KEY_REUSED", conflict
    async with http.get(
        f"{stack.base_url}/api/v1/workflow-runs",
        params={"workflow_id": workflow_id},
        headers=account.headers,
    ) as response:
        listed = (await response.json())["data"]
    assert [r["id"] for r in listed] == [first["data"]["id"]]
    # The replay's and the conflict's re-uploaded files were deleted again: only the
    # first request's file remains.
    conn = await asyncpg.connect(stack.dsn)
    try:
        stored = await conn.fetch(
            "SELECT id FROM storage.attachments WHERE owner_user_id = $1", account.user_id
        )
    finally:
        await conn.close()
    assert len(stored) == 1, stored
