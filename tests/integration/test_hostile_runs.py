"""Hostile and unlucky inputs to run creation through the real stack (issue #14):
creation batches over the gRPC cap, concurrent retries with one Idempotency-Key,
replayed rate-limit headers, internal webhook URLs, http stages that cannot build their
request, and team captures over a member's allocation."""

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    runs_db,
)

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
