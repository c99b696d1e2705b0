"""The run API through the real stack: create (shape, links, validation), read with
long-poll, list with filters and pagination, cancel, input, and NATS being down."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.runs import Account, admin_json, apply_workflow, create_account, create_user
from weft.runs.v1 import runs_pb2 as pb
from weft.runs.v1 import runs_pb2_grpc

TERMINAL = {"completed", "failed", "canceled"}


def template_workflow(slug: str) -> str:
    return json.dumps(
        {
            "slug": slug,
            "name": "Template only",
            "fields": [
                {
                    "name": "max_projects",
                    "type": "integer",
                    "required": True,
                    "constraints": {"min": 1, "max": 50},
                },
                {"name": "tone", "type": "select", "constraints": {"options": ["dry", "warm"]}},
                {"name": "sheet", "type": "file"},
            ],
            "stages": [
                {
                    "id": "greet",
                    "type": "template",
                    "template": "{{ input_text }} x{{ params.max_projects }}",
                }
            ],
            "output": '{{ {"text": stages.greet} | tojson }}',
        }
    )


def review_workflow(slug: str) -> str:
    return json.dumps(
        {
            "slug": slug,
            "name": "Needs review",
            "stages": [
                {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
                {
                    "id": "review",
                    "type": "human_review",
                    "prompt": "OK?",
                    "fields": [{"name": "approved", "type": "boolean", "required": True}],
                },
                {"id": "done", "type": "template", "template": "{{ stages.review.approved }}"},
            ],
        }
    )


class Client:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = aiohttp.ClientSession()

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any, Any]:
        async with self.http.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            headers={**self.headers, **headers},
        ) as response:
            return response.status, await response.json(), response.headers

    async def create(self, workflow_id: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
        return await self.call("POST", f"/api/v1/workflows/{workflow_id}/runs", body, **headers)


@pytest.fixture(scope="module")
async def workflows(runs: runs_pb2_grpc.RunsServiceStub) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    out = {}
    for name, text in (
        ("template", template_workflow(f"tpl-{tag}")),
        ("review", review_workflow(f"rev-{tag}")),
    ):
        wf = await runs.ApplyWorkflow(pb.ApplyWorkflowRequest(definition=text))
        out[name] = wf.id
    return out


def new_account(stack: Any) -> str:
    email = f"runs-{uuid.uuid4().hex[:10]}@example.com"
    return create_account(stack, "50", email=email).token


@pytest.fixture(scope="module")
async def client(stack: Any) -> AsyncIterator[Client]:
    c = Client(stack.base_url, new_account(stack))
    yield c
    await c.http.close()


@pytest.fixture(scope="module")
async def stranger(stack: Any) -> AsyncIterator[Client]:
    c = Client(stack.base_url, new_account(stack))
    yield c
    await c.http.close()


def has_worker(stack: Any) -> bool:
    return "worker" in stack.processes


async def test_create_answers_201_pending_with_links(
    stack: Any, client: Client, workflows: dict[str, str]
) -> None:
    wf = workflows["template"]
    status, body, headers = await client.create(
        wf, {"input_text": "hello", "params": {"max_projects": 3}}
    )
    assert status == 201, body
    data = body["data"]
    assert set(data) == {"id", "workflow_id", "status", "created_at", "links"}
    assert data["id"].startswith("run_") and data["workflow_id"] == wf
    assert data["status"] == "pending" and data["created_at"].endswith("Z")
    assert data["links"] == {
        "self": f"{stack.base_url}/api/v1/workflow-runs/{data['id']}",
        "app": f"{stack.base_url}/app/workflows/{wf}/runs/{data['id']}",
    }
    assert headers["X-Request-Id"].startswith("req_")
    status, got, _ = await client.call("GET", f"/api/v1/workflow-runs/{data['id']}")
    assert status == 200 and got["data"]["id"] == data["id"]
    assert {
        "status",
        "result",
        "error",
        "cost_cents",
        "cost_breakdown",
        "human_input_request",
        "started_at",
        "completed_at",
    } <= set(got["data"])


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"params": {"max_projects": 3}}, "MISSING_PARAM", "input_text"),
        ({"input_text": 5, "params": {"max_projects": 3}}, "INVALID_PARAM", "input_text"),
        (
            {"input_text": "x" * 50_001, "params": {"max_projects": 3}},
            "INVALID_PARAM",
            "input_text",
        ),
        ({"input_text": "x"}, "MISSING_PARAM", "params.max_projects"),
        (
            {"input_text": "x", "params": {"max_projects": "3"}},
            "INVALID_PARAM",
            "params.max_projects",
        ),
        (
            {"input_text": "x", "params": {"max_projects": 99}},
            "INVALID_PARAM",
            "params.max_projects",
        ),
        (
            {"input_text": "x", "params": {"max_projects": 1, "tone": "cold"}},
            "INVALID_PARAM",
            "params.tone",
        ),
        (
            {"input_text": "x", "params": {"max_projects": 1, "nope": 1}},
            "INVALID_PARAM",
            "params.nope",
        ),
        ({"input_text": "x", "params": [1]}, "INVALID_PARAM", "params"),
        (
            {
                "input_text": "x",
                "params": {"max_projects": 1},
                "webhook_url": "http://evil.example/",
            },
            "INVALID_PARAM",
            "webhook_url",
        ),
        ({"input_text": "x", "params": {"max_projects": 1}, "extra": 1}, "INVALID_PARAM", "extra"),
    ],
)
async def test_validation_errors_are_400_with_param(
    client: Client, workflows: dict[str, str], body: Any, code: str, param: str
) -> None:
    status, got, headers = await client.create(workflows["template"], body)
    assert status == 400, got
    assert got["error"]["code"] == code and got["error"]["param"] == param
    assert got["error"]["request_id"] == headers["X-Request-Id"]


async def test_bad_json_idempotency_key_and_attachments(
    stack: Any, client: Client, workflows: dict[str, str]
) -> None:
    wf = workflows["template"]
    async with client.http.post(
        f"{stack.base_url}/api/v1/workflows/{wf}/runs",
        data=b"{not json",
        headers={**client.headers, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "INVALID_JSON"
    body = {"input_text": "x", "params": {"max_projects": 1}}
    status, got, _ = await client.create(wf, body, **{"Idempotency-Key": "k" * 257})
    assert status == 400 and got["error"]["param"] == "Idempotency-Key"
    status, got, _ = await client.create(wf, {**body, "attachment_ids": ["att_not_mine"]})
    assert status == 404 and got["error"]["param"] == "attachment_ids[0]"
    status, got, _ = await client.create(
        wf, {"input_text": "x", "params": {"max_projects": 1, "sheet": "att_nope"}}
    )
    assert status == 404 and got["error"]["code"] == "NOT_FOUND"
    status, got, _ = await client.create("wf_unknown", body)
    assert status == 404 and got["error"]["code"] == "NOT_FOUND"


async def test_runs_are_visible_only_to_their_owner(
    client: Client, stranger: Client, workflows: dict[str, str]
) -> None:
    _, created, _ = await client.create(
        workflows["template"], {"input_text": "mine", "params": {"max_projects": 1}}
    )
    run_id = created["data"]["id"]
    for path in (
        f"/api/v1/workflow-runs/{run_id}",
        "/api/v1/workflow-runs/run_00000000000000000000000000",
        "/api/v1/workflow-runs/nonsense",
    ):
        status, body, _ = await stranger.call("GET", path)
        assert status == 404 and body["error"]["code"] == "NOT_FOUND", path
    for action, payload in (("cancel", None), ("input", {"values": {}})):
        status, body, _ = await stranger.call(
            "POST", f"/api/v1/workflow-runs/{run_id}/{action}", payload
        )
        assert status == 404, body
    status, body, _ = await stranger.call("GET", "/api/v1/workflow-runs?limit=100")
    assert status == 200 and run_id not in [r["id"] for r in body["data"]]


async def test_cancel_then_409_and_input_409_when_not_awaiting(
    client: Client, workflows: dict[str, str]
) -> None:
    _, created, _ = await client.create(
        workflows["template"], {"input_text": "c", "params": {"max_projects": 1}}
    )
    run_id = created["data"]["id"]
    status, body, _ = await client.call(
        "POST", f"/api/v1/workflow-runs/{run_id}/input", {"values": {}}
    )
    assert status == 409 and body["error"]["code"] == "RUN_NOT_AWAITING_INPUT"
    status, body, _ = await client.call("POST", f"/api/v1/workflow-runs/{run_id}/cancel")
    if status == 200:
        assert body["data"]["status"] == "canceled" and body["data"]["completed_at"]
    else:  # the worker finished it first: it is terminal either way
        assert status == 409
    status, body, _ = await client.call("POST", f"/api/v1/workflow-runs/{run_id}/cancel")
    assert status == 409 and body["error"]["code"] == "RUN_NOT_CANCELABLE"


async def test_long_poll_returns_promptly_on_a_status_change(
    client: Client, workflows: dict[str, str]
) -> None:
    # A review run parks in awaiting_input (with a worker) or stays pending (without):
    # either way the only change left to wait for is the cancel below.
    _, created, _ = await client.create(workflows["review"], {"input_text": "lp"})
    run_id = created["data"]["id"]
    deadline = time.monotonic() + 30
    status_now = "pending"
    while time.monotonic() < deadline:
        _, got, _ = await client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=2")
        status_now = got["data"]["status"]
        if status_now in ("awaiting_input", "pending") and not has_worker_running(got):
            break
    poll = asyncio.create_task(client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=30"))
    await asyncio.sleep(0.5)
    assert not poll.done()
    began = time.monotonic()
    status, _, _ = await client.call("POST", f"/api/v1/workflow-runs/{run_id}/cancel")
    assert status == 200
    code, body, _ = await asyncio.wait_for(poll, 30)
    waited = time.monotonic() - began
    assert code == 200 and body["data"]["status"] == "canceled"
    # Far below the 30 s it would have waited without the change (not a timing target).
    assert waited < 15, waited
    # A terminal run answers at once, whatever the wait.
    _, again, _ = await asyncio.wait_for(
        client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=60"), 10
    )
    assert again["data"]["status"] == "canceled"
    status, body, _ = await client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=61")
    assert status == 400 and body["error"]["param"] == "wait"


def has_worker_running(got: Any) -> bool:
    return bool(got["data"]["status"] == "running")


async def test_list_filters_and_pagination(stack: Any, workflows: dict[str, str]) -> None:
    c = Client(stack.base_url, new_account(stack))
    try:
        made = []
        for i in range(3):
            _, created, _ = await c.create(
                workflows["template"], {"input_text": f"l{i}", "params": {"max_projects": 1}}
            )
            made.append(created["data"]["id"])
        _, created, _ = await c.create(workflows["review"], {"input_text": "r"})
        review_id = created["data"]["id"]
        await c.call("POST", f"/api/v1/workflow-runs/{review_id}/cancel")

        status, body, _ = await c.call("GET", "/api/v1/workflow-runs?limit=2")
        assert status == 200 and body["has_more"] is True
        first = [r["id"] for r in body["data"]]
        status, body, _ = await c.call(
            "GET", f"/api/v1/workflow-runs?limit=2&starting_after={first[-1]}"
        )
        second = [r["id"] for r in body["data"]]
        assert body["has_more"] is False
        # Newest first, every run once.
        assert first + second == [review_id, *reversed(made)]
        assert body["data"][0]["links"]["self"].endswith(second[0])

        _, body, _ = await c.call("GET", f"/api/v1/workflow-runs?workflow_id={workflows['review']}")
        assert [r["id"] for r in body["data"]] == [review_id]
        _, body, _ = await c.call("GET", "/api/v1/workflow-runs?status=canceled")
        assert [r["id"] for r in body["data"]] == [review_id]
        status, body, _ = await c.call("GET", "/api/v1/workflow-runs?status=bogus")
        assert status == 400 and body["error"]["param"] == "status"
    finally:
        await c.http.close()


async def test_template_run_completes_and_review_run_resumes(
    stack: Any, client: Client, workflows: dict[str, str]
) -> None:
    if not has_worker(stack):
        pytest.skip("no worker in this stack")
    _, created, _ = await client.create(
        workflows["template"], {"input_text": "hi", "params": {"max_projects": 4}}
    )
    run = await wait_terminal(client, created["data"]["id"])
    assert run["status"] == "completed", run
    assert run["result"] == {"text": "hi x4"}
    assert run["cost_cents"] == 0 and run["started_at"] and run["completed_at"]

    _, created, _ = await client.create(workflows["review"], {"input_text": "r"})
    run_id = created["data"]["id"]
    run = await wait_for_status(client, run_id, "awaiting_input")
    assert run["human_input_request"]["stage"] == "review"
    status, body, _ = await client.call(
        "POST", f"/api/v1/workflow-runs/{run_id}/input", {"values": {"approved": "yes"}}
    )
    assert status == 400 and body["error"]["param"] == "values.approved"
    status, body, _ = await client.call(
        "POST", f"/api/v1/workflow-runs/{run_id}/input", {"values": {"approved": True}}
    )
    assert status == 200 and body["data"]["status"] in ("running", "completed")
    run = await wait_terminal(client, run_id)
    assert run["status"] == "completed" and run["result"] in ("True", True), run


async def wait_for_status(client: Client, run_id: str, wanted: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body, _ = await client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=5")
        if body["data"]["status"] == wanted or body["data"]["status"] in TERMINAL:
            return body["data"]
    raise AssertionError(f"run {run_id} never reached {wanted}")


async def wait_terminal(client: Client, run_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body, _ = await client.call("GET", f"/api/v1/workflow-runs/{run_id}?wait=5")
        if body["data"]["status"] in TERMINAL:
            return body["data"]
    raise AssertionError(f"run {run_id} did not finish")


async def test_runs_created_while_nats_is_down_are_published_when_it_returns(
    stack: Any, client: Client, workflows: dict[str, str]
) -> None:
    stack.stop("nats")
    try:
        ids = []
        for i in range(5):
            status, body, _ = await client.create(
                workflows["template"], {"input_text": f"n{i}", "params": {"max_projects": 2}}
            )
            assert status == 201, body
            ids.append(body["data"]["id"])
        conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "runs"})
        try:
            pending = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                " AND convert_from(payload, 'UTF8')::jsonb ->> 'run_id' = ANY($1)",
                ids,
            )
            assert pending >= 10  # run.created + a job per run, all kept
        finally:
            await conn.close()
    finally:
        stack.start("nats")
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "runs"})
    try:
        deadline = time.monotonic() + 60
        left = -1
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                " AND convert_from(payload, 'UTF8')::jsonb ->> 'run_id' = ANY($1)",
                ids,
            )
            if left == 0:
                break
            await asyncio.sleep(0.5)
        assert left == 0
    finally:
        await conn.close()
    if has_worker(stack):
        for run_id in ids:
            run = await wait_terminal(client, run_id, timeout=90)
            assert run["status"] == "completed" and run["result"] == {
                "text": f"n{ids.index(run_id)} x2"
            }


async def test_idempotent_create_replays_and_starts_one_run(
    stack: Any, workflows: dict[str, str]
) -> None:
    c = Client(stack.base_url, new_account(stack))
    try:
        wf = workflows["template"]
        body = {"input_text": "once", "params": {"max_projects": 2}}
        key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        first = await c.create(wf, body, **key)
        assert first[0] == 201, first[1]
        assert "Idempotent-Replayed" not in first[2]
        assert int(first[2]["RateLimit-Limit"]) > 0
        assert int(first[2]["RateLimit-Remaining"]) < int(first[2]["RateLimit-Limit"])
        # Same key, same body (other key order): many concurrent retries, one run.
        same = {"params": {"max_projects": 2}, "input_text": "once"}
        answers = await asyncio.gather(*(c.create(wf, same, **key) for _ in range(8)))
        for status, got, headers in answers:
            assert status == 201 and got == first[1]
            assert headers["Idempotent-Replayed"] == "true"
        status, got, _ = await c.create(wf, {**body, "input_text": "twice"}, **key)
        assert status == 409 and got["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        _, listed, _ = await c.call("GET", "/api/v1/workflow-runs?limit=100")
        assert [r["id"] for r in listed["data"]] == [first[1]["data"]["id"]]
        # A 400 is not stored: the key works once the request is fixed.
        key2 = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        status, _, _ = await c.create(wf, {"input_text": "x"}, **key2)
        assert status == 400
        status, _, _ = await c.create(wf, body, **key2)
        assert status == 201
    finally:
        await c.http.close()


async def test_llm_run_without_credits_is_402_with_the_estimate(stack: Any) -> None:
    poor = create_user(stack, f"poor-{uuid.uuid4().hex[:10]}@example.com")
    c = Client(stack.base_url, poor.token)
    try:
        # The shipped example: one llm stage on the local model, which has a price here.
        status, body, _ = await c.create(
            "wf_timesheet_summary", {"input_text": "Sum it up.", "params": {"csv": "a,b\n1,2"}}
        )
        assert status == 402, body
        assert body["error"]["code"] == "INSUFFICIENT_CREDITS"
        assert "Estimated cost: $" in body["error"]["message"]
        _, listed, _ = await c.call("GET", "/api/v1/workflow-runs")
        assert listed["data"] == []
    finally:
        await c.http.close()


async def test_creating_a_run_outside_the_allowlist_is_404(
    stack: Any, workflows: dict[str, str]
) -> None:
    email = f"allow-{uuid.uuid4().hex[:10]}@example.com"
    user = admin_json(stack, "users", "create", "--email", email, "--plan", "pro")
    token = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        user["id"],
        "--name",
        "t",
        "--allowlist",
        workflows["review"],
    )["secret"]
    c = Client(stack.base_url, token)
    try:
        status, body, _ = await c.create(
            workflows["template"], {"input_text": "x", "params": {"max_projects": 1}}
        )
        assert status == 404 and body["error"]["code"] == "NOT_FOUND"
        status, body, _ = await c.create(workflows["review"], {"input_text": "x"})
        assert status == 201, body
    finally:
        await c.http.close()


async def test_a_refused_creation_is_logged_with_its_request_id(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    # Creations travel in shared CreateRuns calls: each keeps its own request id.
    workflow_id = await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "template": "{{ input_text }}"}],
        fields=[{"name": "n", "type": "integer"}],
    )
    rid = "test-rid-" + uuid.uuid4().hex[:12]
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": "hi", "params": {"n": "not a number"}},
        headers={**account.headers, "X-Request-Id": rid},
    ) as response:
        body = await response.json()
    assert response.status == 400, body
    assert body["error"]["param"] == "params.n" and body["error"]["request_id"] == rid
    assert rid in stack.processes["runs"].log_path.read_text()
