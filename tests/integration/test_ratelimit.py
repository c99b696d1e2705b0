"""Run-creation rate limits through the public API: RateLimit-* headers, the limit reached
exactly, 429 RATE_LIMITED with Retry-After, and the count shared by two gateway processes."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devstack.ports import free_port
from devstack.processes import PythonProcess
from devstack.stack import PROJECT_ROOT
from services.runs.store.ratelimit import BUCKET_SECONDS, DEFAULT_LIMITS
from tests.support.runs import Account, apply_workflow, create_account, runs_db

STAGES = [{"id": "echo", "type": "template", "template": "{{ input_text }}"}]


@pytest.fixture(scope="module")
def second_gateway(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another gateway process beside the stack's, sharing its services and database."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = PythonProcess(
        "gateway-ratelimit",
        Path(tmp_path_factory.mktemp("gateway2")),
        ["-m", "gateway"],
        {**stack.env, "WEFT_HTTP_PORT": str(port), "WEFT_PUBLIC_BASE_URL": url},
        http_url=f"{url}/healthz",
        cwd=PROJECT_ROOT,
    )
    process.start()
    try:
        yield url
    finally:
        process.stop()


async def use_up(stack: Any, account_id: str, runs: int) -> None:
    """Record `runs` earlier creations in the last hour (a few minutes ago), as if made."""
    bucket = (int(time.time()) - 300) // BUCKET_SECONDS * BUCKET_SECONDS
    conn = await runs_db(stack)
    try:
        await conn.execute(
            "INSERT INTO rate_buckets (account_id, bucket, count) VALUES ($1, $2, $3)",
            account_id,
            bucket,
            runs,
        )
    finally:
        await conn.close()


async def create(
    http: aiohttp.ClientSession, base_url: str, account: Account, workflow_id: str
) -> tuple[int, Any, Any]:
    async with http.post(
        f"{base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": "hi"},
        headers=account.headers,
    ) as response:
        return response.status, await response.json(), response.headers


async def test_the_limit_is_exact_and_shared_by_two_gateways(
    stack: Any, second_gateway: str, http: aiohttp.ClientSession
) -> None:
    limit = DEFAULT_LIMITS["pro"]
    workflow = await apply_workflow(stack, STAGES)
    account = create_account(stack)
    await use_up(stack, account.user_id, limit - 3)
    gateways = [stack.base_url, second_gateway, stack.base_url]
    for expected_remaining, base_url in zip((2, 1, 0), gateways, strict=True):
        status, body, headers = await create(http, base_url, account, workflow)
        assert status == 201, body
        assert headers["RateLimit-Limit"] == str(limit)
        assert headers["RateLimit-Remaining"] == str(expected_remaining)
        assert 0 < int(headers["RateLimit-Reset"]) <= 3600
    for base_url in (second_gateway, stack.base_url):
        status, body, headers = await create(http, base_url, account, workflow)
        assert status == 429, body
        error = body["error"]
        assert error["code"] == "RATE_LIMITED"
        assert (error["limit"], error["remaining"]) == (limit, 0)
        retry_after = int(headers["Retry-After"])
        # The earlier runs leave the rolling hour about 55 minutes from now.
        assert 3300 - 2 * BUCKET_SECONDS <= retry_after <= 3300 + BUCKET_SECONDS
        assert headers["RateLimit-Remaining"] == "0"
        assert headers["RateLimit-Limit"] == str(limit)
    conn = await runs_db(stack)
    try:
        made = await conn.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", account.user_id)
    finally:
        await conn.close()
    assert made == 3


async def test_concurrent_creations_at_the_limit_take_exactly_what_is_left(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    # Concurrent creations share insert statements (group commit): the rate take of each
    # row must still see the rows before it in the same statement.
    limit = DEFAULT_LIMITS["pro"]
    workflow = await apply_workflow(stack, STAGES)
    account = create_account(stack)
    await use_up(stack, account.user_id, limit - 5)
    answers = await asyncio.gather(
        *(create(http, stack.base_url, account, workflow) for _ in range(30))
    )
    accepted = [headers for status, _, headers in answers if status == 201]
    refused = [body for status, body, _ in answers if status == 429]
    assert len(accepted) == 5 and len(refused) == 25, [a[0] for a in answers]
    assert sorted(int(h["RateLimit-Remaining"]) for h in accepted) == [0, 1, 2, 3, 4]
    assert {body["error"]["code"] for body in refused} == {"RATE_LIMITED"}
    conn = await runs_db(stack)
    try:
        made = await conn.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", account.user_id)
        jobs = await conn.fetchval(
            "SELECT count(*) FROM outbox o JOIN runs r ON o.msg_id = 'job-' || r.id || '-0'"
            " WHERE r.user_id = $1",
            account.user_id,
        )
    finally:
        await conn.close()
    assert made == 5 and jobs == 5


async def test_a_refused_request_keeps_its_idempotency_key_usable(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    workflow = await apply_workflow(stack, STAGES)
    account = create_account(stack)
    await use_up(stack, account.user_id, DEFAULT_LIMITS["pro"])
    headers = {**account.headers, "Idempotency-Key": "limited-1"}
    url = f"{stack.base_url}/api/v1/workflows/{workflow}/runs"
    async with http.post(url, json={"input_text": "x"}, headers=headers) as response:
        assert response.status == 429
    conn = await runs_db(stack)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE account_id = $1", account.user_id
        )
    finally:
        await conn.close()
    assert stored == 0
