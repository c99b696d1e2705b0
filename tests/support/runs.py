"""Helpers for run lifecycle tests against the real stack: accounts, workflows, runs."""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from weft.runs.v1 import runs_pb2, runs_pb2_grpc
from weftcore.grpc_client import open_channel

TERMINAL = ("completed", "failed", "canceled")


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def admin_json(stack: Any, *args: str) -> Any:
    """Run `weft-admin *args` against the stack and answer its JSON output."""
    done = stack.admin(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def create_user(stack: Any, email: str | None = None, plan: str = "pro") -> Account:
    """A user with an API key (all scopes) and no credits, via weft-admin."""
    email = email or f"worker-{uuid.uuid4().hex[:10]}@example.com"
    user = admin_json(stack, "users", "create", "--email", email, "--plan", plan)
    key = admin_json(stack, "keys", "create", "--user", user["id"], "--name", "t")
    return Account(user["id"], key["secret"])


def create_account(
    stack: Any, credits_usd: str = "100.00", *, email: str | None = None, plan: str = "pro"
) -> Account:
    """A user (pro unless `plan`) with an API key (all scopes) and credits, via weft-admin."""
    account = create_user(stack, email, plan)
    stack.admin("credits", "grant", "--account", account.user_id, "--amount-usd", credits_usd)
    return account


async def apply_workflow(stack: Any, stages: list[dict[str, Any]], **extra: Any) -> str:
    """Apply a throwaway workflow through the ApplyWorkflow RPC; answers its id."""
    slug = f"w-{uuid.uuid4().hex[:12]}"
    definition = {"slug": slug, "name": f"Test {slug}", "stages": stages, **extra}
    channel = open_channel(stack.env["WEFT_RUNS_ADDR"])
    try:
        stub = runs_pb2_grpc.RunsServiceStub(channel)
        reply = await stub.ApplyWorkflow(
            runs_pb2.ApplyWorkflowRequest(definition=json.dumps(definition)), timeout=10
        )
    finally:
        await channel.close()
    return str(reply.id)


async def create_run(
    http: aiohttp.ClientSession,
    stack: Any,
    account: Account,
    workflow_id: str,
    input_text: str = "hello",
    **body: Any,
) -> dict[str, Any]:
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": input_text, **body},
        headers=account.headers,
    ) as response:
        data = await response.json()
        assert response.status == 201, data
        return dict(data["data"])


async def get_run(
    http: aiohttp.ClientSession, stack: Any, account: Account, run_id: str, wait: int = 0
) -> dict[str, Any]:
    async with http.get(
        f"{stack.base_url}/api/v1/workflow-runs/{run_id}",
        params={"wait": str(wait)} if wait else None,
        headers=account.headers,
    ) as response:
        data = await response.json()
        assert response.status == 200, data
        return dict(data["data"])


async def wait_for(
    http: aiohttp.ClientSession,
    stack: Any,
    account: Account,
    run_id: str,
    statuses: tuple[str, ...] = TERMINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Long-poll until the run reaches one of `statuses` (AssertionError on timeout).

    `?wait` returns on the next change from the status at the time of the request, so a
    short-lived status (`running`) can pass unseen between two polls: those are polled."""
    deadline = time.monotonic() + timeout
    run = await get_run(http, stack, account, run_id)
    while run["status"] not in statuses:
        left = deadline - time.monotonic()
        assert left > 0, f"run {run_id} stuck in {run['status']}: {run}"
        if "running" in statuses:
            await asyncio.sleep(0.05)
            run = await get_run(http, stack, account, run_id)
        else:
            run = await get_run(http, stack, account, run_id, wait=max(1, min(10, int(left))))
    return run


async def post_run_action(
    http: aiohttp.ClientSession,
    stack: Any,
    account: Account,
    run_id: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{stack.base_url}/api/v1/workflow-runs/{run_id}/{action}",
        json=body or {},
        headers=account.headers,
    ) as response:
        return response.status, dict(await response.json())


async def runs_db(stack: Any) -> asyncpg.Connection:
    """A direct connection to the runs schema, to check what tests cannot see via the API."""
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "runs"})
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    return conn


async def wait_stage_running(
    conn: asyncpg.Connection, run_id: str, stage: str, timeout: float = 30.0
) -> None:
    """Polls until a worker has claimed `stage` of the run (its row is `running`)."""
    deadline = time.monotonic() + timeout
    while (
        await conn.fetchval(
            "SELECT status FROM stage_results WHERE run_id = $1 AND stage_id = $2", run_id, stage
        )
        != "running"
    ):
        assert time.monotonic() < deadline, f"stage {stage!r} never started"
        await asyncio.sleep(0.05)


async def event_types(conn: asyncpg.Connection, run_id: str) -> list[tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT type, stage FROM run_events WHERE run_id = $1 ORDER BY seq", run_id
    )
    return [(r["type"], r["stage"]) for r in rows]


async def fake_llm_calls(stack: Any) -> dict[str, int]:
    """Calls the fake LLM answered so far per `[[tag:name]]` in the prompt."""
    base = stack.env["WEFT_LLM_FAKE_BASE_URL"].removesuffix("/v1")
    async with aiohttp.ClientSession() as http, http.get(f"{base}/stats") as response:
        return dict((await response.json())["by_tag"])
