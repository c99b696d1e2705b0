"""The idempotency records against the real Postgres: claim, replay, conflicts, retention,
and exactly one winner among many concurrent transactions."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.runs.api.idempotency_server import IdempotencyServicer
from services.runs.store import idempotency
from weft.idempotency.v1 import idempotency_pb2 as pb
from weftcore.db import create_pool
from weftcore.errors import Conflict
from weftcore.ids import utcnow


@pytest.fixture(scope="module")
async def pool(stack: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.dsn, "runs", min_size=1, max_size=20)
    yield pool
    await pool.close()


def fresh() -> tuple[str, str]:
    return f"usr_{uuid.uuid4().hex}", f"key-{uuid.uuid4().hex}"


async def test_claim_complete_replay(pool: asyncpg.Pool) -> None:
    account, key = fresh()
    async with pool.acquire() as conn:
        got = await idempotency.begin(conn, account, key, "POST", "/api/v1/x", "h1")
        assert got.proceed
        with pytest.raises(Conflict) as info:
            await idempotency.begin(conn, account, key, "POST", "/api/v1/x", "h1")
        assert info.value.code == "IDEMPOTENCY_IN_FLIGHT"
        assert await idempotency.complete(conn, account, key, 201, '{"data":1}')
        got = await idempotency.begin(conn, account, key, "POST", "/api/v1/x", "h1")
        assert (got.proceed, got.http_status, got.body_json) == (False, 201, '{"data":1}')
        for method, path, digest in [
            ("POST", "/api/v1/x", "h2"),
            ("POST", "/api/v1/y", "h1"),
            ("PUT", "/api/v1/x", "h1"),
        ]:
            with pytest.raises(Conflict) as info:
                await idempotency.begin(conn, account, key, method, path, digest)
            assert info.value.code == "IDEMPOTENCY_KEY_REUSED"
        # Another account's identical key is independent.
        other, _ = fresh()
        assert (await idempotency.begin(conn, other, key, "POST", "/api/v1/x", "h2")).proceed


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429])
async def test_refusals_are_not_stored(pool: asyncpg.Pool, status: int) -> None:
    account, key = fresh()
    async with pool.acquire() as conn:
        assert (await idempotency.begin(conn, account, key, "POST", "/p", "h")).proceed
        assert not await idempotency.complete(conn, account, key, status, "{}")
        # The caller fixes the request and retries with the same key: it runs.
        assert (await idempotency.begin(conn, account, key, "POST", "/p", "other")).proceed


@pytest.mark.parametrize("status", [201, 402, 500])
async def test_work_that_started_is_stored(pool: asyncpg.Pool, status: int) -> None:
    account, key = fresh()
    async with pool.acquire() as conn:
        await idempotency.begin(conn, account, key, "POST", "/p", "h")
        assert await idempotency.complete(conn, account, key, status, '{"s":1}')
        got = await idempotency.begin(conn, account, key, "POST", "/p", "h")
        assert (got.proceed, got.http_status) == (False, status)


async def test_records_expire_after_24_hours(pool: asyncpg.Pool) -> None:
    account, key = fresh()
    then = utcnow() - timedelta(hours=24, seconds=1)
    async with pool.acquire() as conn:
        await idempotency.begin(conn, account, key, "POST", "/p", "h", now=then)
        await idempotency.complete(conn, account, key, 201, "{}", now=then)
        # Expired: a different body is no conflict, it is a new request.
        assert (await idempotency.begin(conn, account, key, "POST", "/p", "h2")).proceed
        await idempotency.forget(conn, account, key)
        other, okey = fresh()
        await idempotency.begin(conn, other, okey, "POST", "/p", "h", now=then)
        assert await idempotency.purge_expired(conn) >= 1
        count = await conn.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE account_id = $1", other
        )
        assert count == 0


async def test_concurrent_transactions_create_exactly_once(pool: asyncpg.Pool) -> None:
    """200 concurrent 'CreateRun' transactions with one key: one creates, all others replay
    the very same answer (or see it in flight), none creates a second object."""
    account, key = fresh()
    created: list[str] = []

    async def create() -> tuple[str, Any]:
        try:
            async with pool.acquire() as conn, conn.transaction():
                got = await idempotency.begin(conn, account, key, "POST", "/runs", "h")
                if not got.proceed:
                    return "replay", got.body_json
                object_id = uuid.uuid4().hex
                await asyncio.sleep(0.05)  # the work
                created.append(object_id)
                body = json.dumps({"id": object_id})
                await idempotency.complete(conn, account, key, 201, body)
                return "created", body
        except Conflict as exc:
            return exc.code, None

    results = await asyncio.gather(*(create() for _ in range(200)))
    kinds = [k for k, _ in results]
    assert kinds.count("created") == 1 and len(created) == 1
    assert set(kinds) <= {"created", "replay", "IDEMPOTENCY_IN_FLIGHT"}
    bodies = {b for k, b in results if k in ("created", "replay")}
    assert bodies == {json.dumps({"id": created[0]})}


async def test_rpcs_commit_the_claim_so_retries_see_it_in_flight(pool: asyncpg.Pool) -> None:
    service = IdempotencyServicer(pool)
    account, key = fresh()
    idem = pb.Idempotency(key=key, method="POST", path="/api/v1/attachments", request_hash="h")
    begin = pb.BeginRequest(account_id=account, idempotency=idem)
    got = await service.Begin(begin, None)
    assert got.outcome == "proceed"
    with pytest.raises(Conflict) as info:
        await service.Begin(begin, None)
    assert info.value.code == "IDEMPOTENCY_IN_FLIGHT"
    done = pb.CompleteRequest(
        account_id=account, idempotency=idem, http_status=201, body_json="{}", store=True
    )
    await service.Complete(done, None)
    got = await service.Begin(begin, None)
    assert (got.outcome, got.http_status, got.body_json) == ("replay", 201, "{}")
    # store=false forgets an in-flight claim.
    account2, _ = fresh()
    req = pb.BeginRequest(account_id=account2, idempotency=idem)
    assert (await service.Begin(req, None)).outcome == "proceed"
    await service.Complete(pb.CompleteRequest(account_id=account2, idempotency=idem), None)
    assert (await service.Begin(req, None)).outcome == "proceed"
