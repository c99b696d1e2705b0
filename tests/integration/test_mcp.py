"""The MCP server at /mcp, driven by the official `mcp` SDK's client against the live stack.

Same keys, scopes and allowlists as the REST API: tools are the key's workflows plus
get_run and submit_input; a call runs the workflow with progress and answers its
result and cost, its review request, or its id when it takes longer than wait_seconds.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from tests.support.runs import Account, admin_json, apply_workflow, create_account

FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
]
TEMPLATE = '{{ {"input": input_text, "count": params.count, "tone": params.tone} | tojson }}'
ECHO = [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}]
REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "Send it?",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
    {"id": "done", "type": "template", "template": "approved={{ stages.review.approved }}"},
]
SLOW = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "[[sleep:3]] hi"}]


@pytest.fixture(scope="module")
async def workflows(stack: Any) -> dict[str, str]:
    return {
        "echo": await apply_workflow(stack, ECHO, fields=FIELDS),
        "other": await apply_workflow(stack, ECHO, fields=FIELDS),
        "review": await apply_workflow(stack, REVIEW),
        "slow": await apply_workflow(stack, SLOW),
    }


def key(stack: Any, account: Account, *args: str) -> str:
    created = admin_json(stack, "keys", "create", "--user", account.user_id, "--name", "mcp", *args)
    return str(created["secret"])


@pytest.fixture(scope="module")
def allowed(stack: Any, account: Account, workflows: dict[str, str]) -> str:
    """A key for the echo, review and slow workflows only (all scopes)."""
    ids = [workflows["echo"], workflows["review"], workflows["slow"]]
    return key(stack, account, "--allowlist", *ids)


@asynccontextmanager
async def connect(stack: Any, token: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=120)) as http,
        streamable_http_client(f"{stack.base_url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def tool_names(session: ClientSession) -> list[str]:
    return [t.name for t in (await session.list_tools()).tools]


async def slug(stack: Any, token: str, workflow_id: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.base_url}/api/v1/workflows/{workflow_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return str((await response.json())["data"]["slug"])


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structuredContent is not None, result
    return result.structuredContent


async def test_tools_are_the_keys_workflows_with_their_fields(
    stack: Any, allowed: str, workflows: dict[str, str]
) -> None:
    async with connect(stack, allowed) as session:
        listed = {t.name: t for t in (await session.list_tools()).tools}
    echo = await slug(stack, allowed, workflows["echo"])
    review = await slug(stack, allowed, workflows["review"])
    slow = await slug(stack, allowed, workflows["slow"])
    assert set(listed) == {"get_run", "submit_input", echo, review, slow}  # not "other"
    schema = listed[echo].inputSchema
    assert schema["required"] == ["count"]
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 1}
    assert schema["properties"]["tone"]["enum"] == ["formal", "casual"]
    assert {"input_text", "idempotency_key", "wait_seconds"} <= set(schema["properties"])
    assert listed["get_run"].inputSchema["required"] == ["run_id"]


async def test_a_call_runs_the_workflow_with_progress_and_cost(
    stack: Any, allowed: str, workflows: dict[str, str]
) -> None:
    echo = await slug(stack, allowed, workflows["echo"])
    seen: list[str] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    args = {"input_text": "from MCP", "count": 2, "tone": "casual", "idempotency_key": "k-1"}
    async with connect(stack, allowed) as session:
        result = await session.call_tool(echo, args, progress_callback=progress)
        again = await session.call_tool(echo, args)
        other = await session.call_tool(echo, {**args, "count": 3})
    out = structured(result)
    assert not result.isError, out
    assert out["status"] == "completed"
    assert out["result"] == {"input": "from MCP", "count": 2, "tone": "casual"}
    assert out["cost_cents"] == 0  # a template stage costs nothing, and says so
    assert out["cost_breakdown"][0]["stage"] == "echo"
    assert out["run_id"].startswith("run_") and out["workflow_id"] == workflows["echo"]
    assert out["run_id"] in result.content[0].text  # type: ignore[union-attr]
    assert seen[0].startswith("run.created run_"), seen
    assert "stage.completed echo" in seen and seen[-1] == "run.completed", seen
    # The same idempotency key and arguments: the first run, not a second one.
    assert structured(again)["run_id"] == out["run_id"]
    # The same key with other arguments: refused as the REST API refuses it.
    assert other.isError and structured(other)["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_bad_arguments_answer_the_apis_error(
    stack: Any, allowed: str, workflows: dict[str, str]
) -> None:
    echo = await slug(stack, allowed, workflows["echo"])
    async with connect(stack, allowed) as session:
        wrong = await session.call_tool(echo, {"count": "many"})
        missing = await session.call_tool(echo, {"tone": "formal"})
        unknown = await session.call_tool(echo, {"count": 1, "colour": "red"})
        no_run = await session.call_tool("get_run", {"run_id": "run_nope"})
    assert wrong.isError and structured(wrong)["error"]["code"] == "INVALID_PARAM"
    assert structured(missing)["error"]["code"] == "MISSING_PARAM"
    assert structured(unknown)["error"] | {"param": "colour"} == structured(unknown)["error"]
    assert structured(no_run)["error"]["code"] == "NOT_FOUND"
    assert structured(no_run)["error"]["request_id"].startswith("req_")


async def test_a_review_is_answered_with_submit_input(
    stack: Any, allowed: str, workflows: dict[str, str]
) -> None:
    review = await slug(stack, allowed, workflows["review"])
    async with connect(stack, allowed) as session:
        waiting = structured(await session.call_tool(review, {"input_text": "hello"}))
        assert waiting["status"] == "awaiting_input", waiting
        request = waiting["human_input_request"]
        assert request["prompt"] == "Send it?" and request["fields"][0]["name"] == "approved"
        assert "submit_input" in waiting["next"]
        answer = {"run_id": waiting["run_id"], "values": {"approved": True}}
        done = structured(await session.call_tool("submit_input", answer))
        twice = await session.call_tool("submit_input", answer)
    assert done["status"] == "completed" and done["run_id"] == waiting["run_id"]
    assert done["result"] == "approved=True", done
    assert twice.isError and structured(twice)["error"]["code"] == "RUN_NOT_AWAITING_INPUT"


async def test_a_long_run_answers_its_id_and_get_run_waits_for_it(
    stack: Any, allowed: str, workflows: dict[str, str]
) -> None:
    slow = await slug(stack, allowed, workflows["slow"])
    async with connect(stack, allowed) as session:
        started = structured(await session.call_tool(slow, {"wait_seconds": 0}))
        assert started["status"] in ("pending", "running"), started
        assert "get_run" in started["next"]
        done = structured(
            await session.call_tool("get_run", {"run_id": started["run_id"], "wait_seconds": 60})
        )
    assert done["status"] == "completed", done
    assert done["cost_cents"] > 0  # fake:echo is priced in this stack
    assert done["cost_breakdown"][0]["model"] == "fake:echo"


async def test_outside_the_allowlist_is_not_found(
    stack: Any, account: Account, allowed: str, workflows: dict[str, str]
) -> None:
    other = await slug(stack, account.token, workflows["other"])  # a key that may see it
    async with connect(stack, allowed) as session:
        by_slug = await session.call_tool(other, {"count": 1})
        by_id = await session.call_tool(workflows["other"], {"count": 1})
    for result in (by_slug, by_id):
        assert result.isError and structured(result)["error"]["code"] == "NOT_FOUND"


async def test_scopes_decide_which_tools_are_listed_and_callable(
    stack: Any, account: Account, workflows: dict[str, str]
) -> None:
    allow = ["--allowlist", workflows["echo"]]
    reader = key(stack, account, "--scopes", "workflows:read", *allow)
    runner = key(stack, account, "--scopes", "workflow_runs:create", *allow)
    echo = await slug(stack, reader, workflows["echo"])
    async with connect(stack, reader) as session:
        assert await tool_names(session) == [echo]
        refused = await session.call_tool(echo, {"count": 1})
    assert refused.isError and structured(refused)["error"]["code"] == "MISSING_SCOPE"
    async with connect(stack, runner) as session:
        assert await tool_names(session) == ["get_run", "submit_input"]
        # Not listed without workflows:read, yet callable by name (as its endpoint is).
        ran = structured(await session.call_tool(echo, {"count": 4}))
    assert ran["status"] == "completed" and ran["result"]["count"] == 4


@pytest.mark.parametrize("token", [None, "wft_live_wrong", "not-a-key"])
async def test_a_missing_or_wrong_key_is_401(stack: Any, token: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}/mcp", json=hello, headers=headers) as response,
    ):
        body = await response.json()
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["error"]["code"] == "UNAUTHENTICATED"
        assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    if token:
        with pytest.raises(BaseException) as raised:  # the SDK raises it in a group
            async with connect(stack, token):
                pass
        assert "401" in repr(raised.value) or "401" in str(raised.value.__cause__)


async def test_a_free_plan_is_refused_before_mcp(stack: Any) -> None:
    free = create_account(stack, plan="free")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}/mcp", json={}, headers=free.headers) as response,
    ):
        assert response.status == 402
        assert (await response.json())["error"]["code"] == "PAID_PLAN_REQUIRED"
