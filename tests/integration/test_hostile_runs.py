"""Hostile and unlucky inputs to run creation through the real stack (issue #14):
creation batches over the gRPC cap, concurrent retries with one Idempotency-Key,
replayed rate-limit headers, internal webhook URLs, http stages that cannot build their
request, and team captures over a member's allocation."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.billing import Stub, priced_model
from tests.support.runs import (
    Account,
    admin_json,
    apply_workflow,
    create_account,
    create_run,
    create_user,
    post_run_action,
    runs_db,
    wait_for,
)
from weft.billing.v1 import billing_pb2 as pb

pytestmark = pytest.mark.timeout(180)

REVIEW = {
    "id": "review",
    "type": "human_review",
    "prompt": "Go?",
    "fields": [{"name": "ok", "type": "boolean"}],
}


async def post(
    http: aiohttp.ClientSession,
    url: str,
    account: Account,
    body: dict[str, Any],
    key: str | None = None,
) -> tuple[int, dict[str, Any], Any]:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, dict(await response.json()), response.headers


def runs_url(stack: Any, workflow_id: str) -> str:
    return f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"


async def count_runs(stack: Any, user_id: str) -> int:
    conn = await runs_db(stack)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", user_id))
    finally:
        await conn.close()


# --- creation batches over the gRPC message cap ------------------------------------------


async def test_oversized_creation_batches_never_fail_other_requests(stack: Any) -> None:
    # Near-1 MiB bodies: a dozen in one CreateRuns call would pass the 8 MiB gRPC cap.
    workflow = await apply_workflow(
        stack, [REVIEW], fields=[{"name": "blob", "type": "text", "required": False}]
    )
    big, small = create_account(stack), create_account(stack)
    blob = "x" * 1_000_000
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:
        answers = await asyncio.gather(
            *[
                post(
                    http,
                    runs_url(stack, workflow),
                    big,
                    {"input_text": "b", "params": {"blob": blob}},
                )
                for _ in range(24)
            ],
            *[post(http, runs_url(stack, workflow), small, {"input_text": "s"}) for _ in range(6)],
        )
    statuses = [status for status, _, _ in answers]
    assert all(status < 500 for status in statuses), [
        (status, body) for status, body, _ in answers if status >= 500
    ][:3]
    assert statuses[24:] == [201] * 6, statuses  # the small account is never hurt
    assert statuses.count(201) == 30, statuses
    assert await count_runs(stack, big.user_id) == 24


# --- one Idempotency-Key, many concurrent retries ----------------------------------------


async def one_run_of_credit(stack: Any, billing: Stub) -> tuple[str, Account, int]:
    """A priced workflow (review first: nothing finishes and frees credits) and an account
    with credits for exactly one run of it; answers (workflow, account, estimate)."""
    model = await priced_model(billing, "hostile")
    workflow = await apply_workflow(
        stack,
        [
            REVIEW,
            {"id": "answer", "type": "llm", "model": model, "prompt": "{{ input_text }}",
             "max_tokens": 200},
        ],
    )  # fmt: skip
    probe = create_account(stack)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await post(http, runs_url(stack, workflow), probe, {"input_text": "one"})
    assert status == 201, body
    ledger = await billing.ListLedger(pb.ListLedgerRequest(account_id=probe.user_id, limit=100))
    (estimate,) = [
        e.amount_micros
        for e in ledger.entries
        if e.kind == "reserve" and e.run_id == body["data"]["id"]
    ]
    account = create_user(stack)
    await billing.Grant(pb.GrantRequest(account_id=account.user_id, amount_micros=estimate))
    return workflow, account, estimate


async def test_concurrent_retries_with_one_key_never_get_402(stack: Any, billing: Stub) -> None:
    workflow, account, _ = await one_run_of_credit(stack, billing)
    key = f"storm-{uuid.uuid4()}"
    url = runs_url(stack, workflow)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:
        same = [post(http, url, account, {"input_text": "one"}, key) for _ in range(20)]
        other = [post(http, url, account, {"input_text": "other"}, key) for _ in range(5)]
        answers = await asyncio.gather(*same, *other)
        # Once the first has finished, a different body is refused as a reused key.
        late = await post(http, url, account, {"input_text": "other"}, key)

    def code(body: dict[str, Any]) -> str:
        return str(body.get("error", {}).get("code", ""))

    assert all(status != 402 for status, _, _ in answers), [b for s, b, _ in answers if s == 402]
    created = [b for s, b, h in answers[:20] if s == 201 and "Idempotent-Replayed" not in h]
    replayed = [b for s, b, h in answers[:20] if h.get("Idempotent-Replayed") == "true"]
    in_flight = [b for s, b, _ in answers[:20] if s == 409 and code(b) == "IDEMPOTENCY_IN_FLIGHT"]
    assert len(created) == 1, answers
    assert len(created) + len(replayed) + len(in_flight) == 20, answers
    assert all(b["data"]["id"] == created[0]["data"]["id"] for b in replayed)
    assert all(s == 409 and code(b) == "IDEMPOTENCY_KEY_REUSED" for s, b, _ in answers[20:])
    assert (late[0], code(late[1])) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert await count_runs(stack, account.user_id) == 1


async def test_a_refusal_after_the_key_is_claimed_releases_it(
    stack: Any, billing: Stub, http: aiohttp.ClientSession
) -> None:
    workflow, account, estimate = await one_run_of_credit(stack, billing)
    url = runs_url(stack, workflow)
    first = await post(http, url, account, {"input_text": "one"})
    assert first[0] == 201, first[1]
    key = f"broke-{uuid.uuid4()}"
    status, body, _ = await post(http, url, account, {"input_text": "one"}, key)
    assert (status, body["error"]["code"]) == (402, "INSUFFICIENT_CREDITS"), body
    # The 402 was not stored and the key is not left in flight: after a top-up the very
    # same request with the same key is a new run.
    await billing.Grant(pb.GrantRequest(account_id=account.user_id, amount_micros=estimate))
    status, body, headers = await post(http, url, account, {"input_text": "one"}, key)
    assert status == 201 and "Idempotent-Replayed" not in headers, body


# --- RateLimit-* headers on replays ------------------------------------------------------


async def test_a_replay_carries_the_current_rate_limit_without_using_it(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    workflow = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    account = create_account(stack)
    url = runs_url(stack, workflow)
    key = f"rl-{uuid.uuid4()}"
    status, first, headers = await post(http, url, account, {"input_text": "a"}, key)
    assert status == 201, first
    remaining = int(headers["RateLimit-Remaining"])
    for _ in range(2):
        status, again, replay = await post(http, url, account, {"input_text": "a"}, key)
        assert (status, replay.get("Idempotent-Replayed")) == (201, "true"), again
        assert replay["RateLimit-Limit"] == headers["RateLimit-Limit"]
        assert int(replay["RateLimit-Remaining"]) == remaining  # nothing was used
        assert 0 < int(replay["RateLimit-Reset"]) <= 3600
    status, _, fresh = await post(http, url, account, {"input_text": "b"})
    assert status == 201 and int(fresh["RateLimit-Remaining"]) == remaining - 1


# --- webhook URLs: one rule at creation and at delivery ----------------------------------

REFUSED_WEBHOOKS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://0.0.0.0:8443/hook",
    "https://user:pass@127.0.0.1/hook",
    "https://10.11.12.13/hook",
    "https://192.168.1.10/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://[::]/hook",
    "http://example.com/hook",
]


async def test_internal_webhook_urls_are_refused_at_creation(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack)
    slug = f"hook-{uuid.uuid4().hex[:10]}"
    workflow = await apply_workflow(
        stack, [{"id": "t", "type": "template", "template": "x"}], slug=slug
    )
    endpoint = f"{stack.base_url}/api/v1/endpoints/{slug}"
    for hook in REFUSED_WEBHOOKS:
        # The published endpoint's flat body passes webhook_url through the same rule.
        for url, body in [
            (runs_url(stack, workflow), {"input_text": "x", "webhook_url": hook}),
            (endpoint, {"webhook_url": hook}),
        ]:
            status, answer, _ = await post(http, url, account, body)
            assert status == 400, (hook, url, answer)
            assert answer["error"]["code"] == "INVALID_PARAM", answer
            assert answer["error"]["param"] == "webhook_url", answer
            assert answer["error"]["message"].startswith("webhook_url refused: "), answer
            assert "http stage" not in answer["error"]["message"], answer
    assert await count_runs(stack, account.user_id) == 0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1 answering 200: (port, bodies received)."""
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], received
    finally:
        await runner.cleanup()


async def eventually(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def deliveries(stack: Any, run_id: str) -> list[dict[str, Any]]:
    shown = await asyncio.to_thread(
        stack.admin, "webhooks", "deliveries", "--run", run_id, check=False
    )
    return list(json.loads(shown.stdout)) if shown.returncode == 0 else []


async def test_loopback_webhook_is_accepted_and_delivered_where_configured(
    stack: Any,
    account: Account,
    http: aiohttp.ClientSession,
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    # The test stack allows loopback webhooks (WEFT_WEBHOOK_ALLOW_LOOPBACK, as in dev).
    port, received = receiver
    workflow = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    run = await create_run(
        http, stack, account, workflow, "hooked", webhook_url=f"http://localhost:{port}/hook"
    )

    async def delivered() -> bool:
        return any(doc["data"]["id"] == run["id"] for doc in received)

    await eventually(delivered)


async def test_a_delivery_refused_by_the_guard_fails_at_once(
    stack: Any,
    account: Account,
    http: aiohttp.ClientSession,
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    # A URL accepted at creation that the guard refuses at delivery (a name that now
    # resolves inside, or a configuration that changed): made here by editing the run.
    port, _ = receiver
    workflow = await apply_workflow(stack, [REVIEW])
    run = await create_run(
        http, stack, account, workflow, "x", webhook_url=f"http://127.0.0.1:{port}/hook"
    )
    await wait_for(http, stack, account, run["id"], ("awaiting_input",))
    conn = await runs_db(stack)
    try:
        await conn.execute(
            "UPDATE runs SET webhook_url = 'https://10.11.12.13/hook' WHERE id = $1", run["id"]
        )
    finally:
        await conn.close()
    status, body = await post_run_action(
        http, stack, account, run["id"], "input", {"values": {"ok": True}}
    )
    assert status == 200, body
    assert (await wait_for(http, stack, account, run["id"]))["status"] == "completed"
    found: list[dict[str, Any]] = []

    async def refused() -> bool:
        found[:] = [d for d in await deliveries(stack, run["id"]) if d["url"].startswith("https")]
        return bool(found and found[0]["attempt_log"] and found[0]["status"] != "pending")

    await eventually(refused)
    (delivery,) = found
    assert delivery["status"] == "failed", delivery
    assert delivery["attempts"] == 1, delivery
    assert "refused" in delivery["last_error"] and "webhook" in delivery["last_error"], delivery


# --- http stages that cannot build their request -----------------------------------------


@pytest.mark.parametrize(
    ("stage", "input_text"),
    [
        ({"headers": {"X-Note": "{{ input_text }}"}}, "a\r\nX-Injected: 1"),
        ({"headers": {"X-Bad\r\nX-Injected": "1"}}, "x"),
        ({"url": "http://127.0.0.1:{{ input_text }}/health"}, "99999"),
    ],
)
async def test_an_http_stage_that_cannot_build_its_request_fails_the_run(
    stack: Any,
    account: Account,
    http: aiohttp.ClientSession,
    stage: dict[str, Any],
    input_text: str,
) -> None:
    # The fake LLM's /health answers (127.0.0.1 is allowlisted for http stages here).
    target = str(stack.env["WEFT_LLM_FAKE_BASE_URL"]).removesuffix("/v1") + "/health"
    definition = {"id": "call", "type": "http", "url": target, **stage}
    workflow = await apply_workflow(stack, [definition])
    created = await create_run(http, stack, account, workflow, input_text)
    run = await wait_for(http, stack, account, created["id"], timeout=30)
    assert run["status"] == "failed", run
    assert run["error"]["stage"] == "call", run
    assert run["error"]["code"] == "HTTP_INVALID_REQUEST", run
    assert run["error"]["message"].startswith("http stage: "), run


# --- team captures never pass the member's allocation ------------------------------------


async def test_team_capture_never_exceeds_the_members_allocation(
    stack: Any, billing: Stub, http: aiohttp.ClientSession
) -> None:
    model = await priced_model(billing, "alloc")  # 10 micros per input token, 20 per output
    # One-letter words: about 1.5 real tokens for every estimated one, and the echoed
    # answer is far longer than the one output token reserved.
    workflow = await apply_workflow(
        stack,
        [{"id": "answer", "type": "llm", "model": model, "prompt": "{{ input_text }}",
          "max_tokens": 1}],
    )  # fmt: skip
    team = admin_json(stack, "teams", "create", "--name", f"t-{uuid.uuid4().hex[:6]}")
    member = create_user(stack, plan="team")
    admin_json(stack, "teams", "add-member", "--team", team["id"], "--user", member.user_id)
    await billing.Grant(pb.GrantRequest(account_id=team["id"], amount_micros=10_000_000))
    allocation = 10_000  # one cent
    await billing.SetAllocation(
        pb.SetAllocationRequest(
            team_id=team["id"], user_id=member.user_id, monthly_micros=allocation
        )
    )
    run = await create_run(http, stack, member, workflow, "a " * 600)
    finished = await wait_for(http, stack, member, run["id"], timeout=120)
    assert finished["status"] == "completed", finished
    (stage,) = finished["cost_breakdown"]
    actual = stage["cost_cents"] * 10_000  # stages are priced in whole cents
    assert stage["input_tokens"] * 10 + stage["output_tokens"] * 20 > allocation
    assert actual > allocation  # the run really cost more than the member may spend

    async def captured() -> bool:
        reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=team["id"], limit=100))
        return any(e.kind == "capture" and e.run_id == run["id"] for e in reply.entries)

    await eventually(captured)
    reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=team["id"], limit=100))
    (capture,) = [e for e in reply.entries if e.kind == "capture" and e.run_id == run["id"]]
    assert capture.amount_micros == allocation, capture
    assert "capped" in capture.note and str(actual) in capture.note, capture.note
    spent = await billing.SetAllocation(
        pb.SetAllocationRequest(
            team_id=team["id"], user_id=member.user_id, monthly_micros=allocation
        )
    )
    assert spent.spent_this_month_micros == allocation
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=team["id"]))
    assert balance.balance_micros == 10_000_000 - allocation
    assert balance.reserved_micros == 0
    # The run still shows what it used.
    assert finished["cost_cents"] == stage["cost_cents"] > 1
