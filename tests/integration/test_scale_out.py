"""Scale-out on one machine: 2 gateways and 3 workers sharing one Postgres and NATS.

Runs created alternately through both gateways all complete exactly once, spread over
several workers; the rate limit and idempotency records hold across gateways because
they live in Postgres, not in a gateway process. This stack is the module's own (the
session `stack` has one gateway and one worker).
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from devstack.ports import free_port
from devstack.stack import Ports, Stack, StackOptions
from tests.support.runs import Account, apply_workflow, create_account, runs_db

pytestmark = pytest.mark.timeout(300)

RUNS = 60
TEAM_LIMIT = 3  # WEFT_RATE_LIMIT_TEAM: tiny, so "exact" is cheap to show


@pytest.fixture(scope="module")
def probe_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory, probe_port: int) -> Iterator[Stack]:
    """Its own stack: 2 gateways, 3 workers, no embedded LLM, the fake LLM on."""
    root: Path = tmp_path_factory.mktemp("scaled")
    ports = Ports.free(gateways=2, workers=3)
    options = StackOptions(
        root=root,
        ports=ports,
        llm="none",
        fake_llm=True,
        extra_env={
            "WEFT_PRICES": '{"fake:echo": [1000000, 2000000]}',
            "WEFT_HTTP_STAGE_ALLOWLIST": "127.0.0.1",
            "WEFT_RATE_LIMIT_TEAM": str(TEAM_LIMIT),
            # The runs service links webhooks to the public API (each gateway sets its own).
            "WEFT_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.gateways[0]}",
            # Few slots per worker, so one worker cannot swallow the whole burst.
            "WEFT_WORKER_CONCURRENCY": "2",
        },
    )
    running = Stack(options)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Probe:
    """An HTTP endpoint the runs' `http` stage calls while the run is `running`: it reads
    which worker owns the run at that moment (runs.worker_id is cleared at the end)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.owner: dict[str, list[str]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        run_id = str((await request.json())["run_id"])
        worker = await self.pool.fetchval(
            "SELECT worker_id FROM runs.runs WHERE id = $1 AND status = 'running'", run_id
        )
        self.owner.setdefault(run_id, []).append(str(worker))
        await asyncio.sleep(0.2)  # hold the worker's slot a little: others get jobs too
        return web.json_response({"worker": worker})


@pytest.fixture(scope="module")
async def probe(scaled: Stack, probe_port: int) -> AsyncIterator[Probe]:
    pool = await asyncpg.create_pool(scaled.dsn, min_size=1, max_size=4)
    assert pool is not None
    found = Probe(pool)
    app = web.Application()
    app.router.add_post("/probe", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", probe_port).start()
    try:
        yield found
    finally:
        await runner.cleanup()
        await pool.close()


def echo_stages() -> list[dict[str, Any]]:
    return [{"id": "echo", "type": "template", "template": "{{ input_text }}"}]


async def post_run(
    http: aiohttp.ClientSession,
    base_url: str,
    account: Account,
    workflow_id: str,
    body: dict[str, Any],
    key: str | None = None,
) -> tuple[int, Any, Any]:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(
        f"{base_url}/api/v1/workflows/{workflow_id}/runs", json=body, headers=headers
    ) as response:
        return response.status, await response.json(), response.headers


async def list_all(
    http: aiohttp.ClientSession, base_url: str, account: Account, workflow_id: str
) -> list[dict[str, Any]]:
    """Every run of the workflow through the public list endpoint, page by page."""
    found: list[dict[str, Any]] = []
    params = {"workflow_id": workflow_id, "limit": "100"}
    while True:
        async with http.get(
            f"{base_url}/api/v1/workflow-runs", params=params, headers=account.headers
        ) as response:
            page = await response.json()
            assert response.status == 200, page
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


async def wait_all_terminal(
    http: aiohttp.ClientSession, scaled: Stack, account: Account, workflow_id: str
) -> list[dict[str, Any]]:
    for _ in range(600):
        runs = await list_all(http, scaled.gateway_urls[1], account, workflow_id)
        if runs and all(r["status"] in ("completed", "failed", "canceled") for r in runs):
            return runs
        await asyncio.sleep(0.25)
    raise AssertionError(f"runs still not finished: {[r['status'] for r in runs]}")


async def test_runs_through_two_gateways_complete_once_on_several_workers(
    scaled: Stack, probe: Probe, probe_port: int, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        scaled,
        [
            *echo_stages(),
            {
                "id": "where",
                "type": "http",
                "method": "POST",
                "url": f"http://127.0.0.1:{probe_port}/probe",
                "headers": {"Content-Type": "application/json"},
                "body": '{"run_id": {{ run.id | tojson }}}',
            },
        ],
        output='{"text": {{ stages.echo | tojson }}, "worker": {{ stages.where.body.worker '
        "| tojson }}}",
    )
    account = create_account(scaled)
    gateways = scaled.gateway_urls
    assert len(gateways) == 2

    async def one(i: int) -> str:
        status, body, _ = await post_run(
            http, gateways[i % 2], account, workflow_id, {"input_text": f"run {i}"}
        )
        assert status == 201, body
        return str(body["data"]["id"])

    created = await asyncio.gather(*(one(i) for i in range(RUNS)))
    assert len(set(created)) == RUNS

    runs = await wait_all_terminal(http, scaled, account, workflow_id)
    ids = [r["id"] for r in runs]
    assert len(ids) == RUNS and set(ids) == set(created), "a run was lost or duplicated"
    assert all(r["status"] == "completed" for r in runs), [r for r in runs if r["error"]]
    texts = sorted(r["result"]["text"] for r in runs)
    assert texts == sorted(f"run {i}" for i in range(RUNS))

    # Each run's http stage ran exactly once, on the worker that owned the run then.
    assert set(probe.owner) == set(created)
    assert all(len(owners) == 1 for owners in probe.owner.values()), probe.owner
    workers = {owners[0] for owners in probe.owner.values()}
    assert None not in workers and "None" not in workers
    assert len(workers) >= 2, f"all runs on one worker: {workers}"
    assert all(r["result"]["worker"] == probe.owner[r["id"]][0] for r in runs)

    conn = await runs_db(scaled)
    try:
        in_db = await conn.fetchval("SELECT count(*) FROM runs WHERE workflow_id = $1", workflow_id)
        events = await conn.fetch(
            "SELECT run_id, count(*) AS n FROM run_events "
            "WHERE type = 'run.completed' AND run_id = ANY($1::text[]) GROUP BY run_id",
            created,
        )
    finally:
        await conn.close()
    assert in_db == RUNS
    assert len(events) == RUNS and all(e["n"] == 1 for e in events)


def team_plan_account(stack: Stack) -> Account:
    """A team-plan user (limit WEFT_RATE_LIMIT_TEAM) with a key and credits."""
    email = f"scale-{uuid.uuid4().hex[:10]}@example.com"
    return create_account(stack, "10.00", email=email, plan="team")


async def test_rate_limit_is_exact_across_gateways(
    scaled: Stack, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(scaled, echo_stages())
    account = team_plan_account(scaled)
    gateways = scaled.gateway_urls
    statuses: list[int] = []
    for i in range(TEAM_LIMIT + 3):
        status, body, _ = await post_run(
            http, gateways[i % 2], account, workflow_id, {"input_text": "x"}
        )
        statuses.append(status)
        if status == 429:
            assert body["error"]["code"] == "RATE_LIMITED"
            assert body["error"]["limit"] == TEAM_LIMIT
    assert statuses == [201] * TEAM_LIMIT + [429] * 3
    runs = await list_all(http, gateways[0], account, workflow_id)
    assert len(runs) == TEAM_LIMIT


async def test_one_idempotency_key_on_both_gateways_makes_one_run(
    scaled: Stack, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(scaled, echo_stages())
    account = create_account(scaled)
    first_gw, second_gw = scaled.gateway_urls
    body = {"input_text": "once"}

    key = f"scale-{uuid.uuid4()}"
    status, first, headers = await post_run(http, first_gw, account, workflow_id, body, key)
    assert status == 201 and "Idempotent-Replayed" not in headers, first
    status, again, headers = await post_run(http, second_gw, account, workflow_id, body, key)
    assert (status, headers.get("Idempotent-Replayed")) == (201, "true"), again
    # The same run; only its links differ (each gateway has its own public base URL here).
    assert {k: v for k, v in again["data"].items() if k != "links"} == {
        k: v for k, v in first["data"].items() if k != "links"
    }

    # The same key raced on both gateways: one run; the rest replay it or are told the
    # first request is still in flight.
    raced = f"scale-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(
            post_run(http, scaled.gateway_urls[i % 2], account, workflow_id, body, raced)
            for i in range(20)
        )
    )
    made = [a for s, a, h in answers if s == 201 and "Idempotent-Replayed" not in h]
    replayed = [a for s, a, h in answers if s == 201 and h.get("Idempotent-Replayed") == "true"]
    in_flight = [a for s, a, _ in answers if s == 409]
    assert len(made) == 1, made
    assert len(made) + len(replayed) + len(in_flight) == 20, answers
    assert all(a["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT" for a in in_flight)
    assert all(a["data"]["id"] == made[0]["data"]["id"] for a in replayed)

    runs = await list_all(http, first_gw, account, workflow_id)
    assert sorted(r["id"] for r in runs) == sorted([first["data"]["id"], made[0]["data"]["id"]])
