"""Idempotency-Key on POST /api/v1/attachments (spec/API.md, Idempotency) on the real
stack: replays, 409s, refusals not stored, and no duplicate left behind in Postgres or S3
(the file is stored before the key can be checked, so a duplicate must be deleted)."""

import asyncio
import hashlib
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from multidict import CIMultiDictProxy

from devstack.stack import Stack
from gateway.routes.attachments import request_hash
from tests.integration.attachments_support import form
from tests.support import storage_files as files
from tests.support.runs import Account, apply_workflow, create_user
from weft.idempotency.v1 import idempotency_pb2, idempotency_pb2_grpc
from weft.storage.v1 import storage_pb2
from weftcore.grpc_client import open_channel

Answer = tuple[int, dict[str, Any], CIMultiDictProxy[str]]


@pytest.fixture
def owner(stack: Stack) -> Account:
    return create_user(stack, f"idem-{uuid.uuid4().hex[:10]}@example.com")


async def post(
    http: aiohttp.ClientSession,
    stack: Stack,
    account: Account,
    key: str | None,
    body: Any,
) -> Answer:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    url = f"{stack.base_url}/api/v1/attachments"
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def rows(stack: Stack, user_id: str) -> set[str]:
    """Ids of the user's attachment rows in the storage schema."""
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "storage"})
    try:
        found = await conn.fetch("SELECT id FROM attachments WHERE owner_user_id = $1", user_id)
    finally:
        await conn.close()
    return {r["id"] for r in found}


async def orphans(stack: Stack) -> set[str]:
    """Attachment ids with objects in S3 but no row: what a forgotten duplicate leaves."""

    def listing() -> set[str]:
        client = stack.processes["s3"].client()  # type: ignore[attr-defined]
        bucket = stack.env["WEFT_S3_BUCKET"]
        names = (
            o.object_name
            for o in client.list_objects(bucket, prefix="attachments/", recursive=True)
        )
        return {n.split("/")[1] for n in names if n}

    in_s3 = await asyncio.to_thread(listing)
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "storage"})
    try:
        known = await conn.fetch("SELECT id FROM attachments WHERE id = ANY($1)", list(in_s3))
    finally:
        await conn.close()
    return in_s3 - {r["id"] for r in known}


async def test_a_retry_replays_the_first_answer_and_drops_the_duplicate(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    data = files.csv_bytes(50)
    before = await orphans(stack)
    status, first, headers = await post(http, stack, owner, "k-1", form("data.csv", data))
    assert status == 201, first
    assert "Idempotent-Replayed" not in headers
    assert first["data"]["sha256"] == hashlib.sha256(data).hexdigest()

    status, again, headers = await post(http, stack, owner, "k-1", form("data.csv", data))
    assert status == 201, again
    assert headers["Idempotent-Replayed"] == "true"
    assert again == first
    assert await rows(stack, owner.user_id) == {first["data"]["id"]}
    assert await orphans(stack) <= before

    # Without a key each upload is its own attachment.
    status, other, _ = await post(http, stack, owner, None, form("data.csv", data))
    assert status == 201 and other["data"]["id"] != first["data"]["id"]


async def test_same_key_other_body_is_409_reused(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    status, first, _ = await post(http, stack, owner, "k-2", form("a.txt", b"alpha"))
    assert status == 201, first
    before = await orphans(stack)
    for body in (
        form("a.txt", b"beta"),  # other bytes
        form("b.txt", b"alpha"),  # same bytes, other file name (it is in the answer)
        form("a.txt", b"alpha", name="upload"),  # other part name
    ):
        status, answer, _ = await post(http, stack, owner, "k-2", body)
        assert status == 409, answer
        assert answer["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await rows(stack, owner.user_id) == {first["data"]["id"]}
    assert await orphans(stack) <= before

    # The key is bound to method + path too: run creation with it conflicts.
    workflow_id = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
    headers = {**owner.headers, "Idempotency-Key": "k-2"}
    async with http.post(url, json={"input_text": "x"}, headers=headers) as response:
        body = await response.json()
        assert response.status == 409, body
        assert body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_a_claim_in_flight_is_409_and_the_upload_is_dropped(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    data = b"in flight"
    # Hold the key the way a first, unfinished request would (same account, path, hash).
    digest = storage_pb2.Attachment(
        original_filename="f.txt", sha256=hashlib.sha256(data).hexdigest()
    )
    idem = idempotency_pb2.Idempotency(
        key="k-3",
        method="POST",
        path="/api/v1/attachments",
        request_hash=request_hash({}, "file", digest),
    )
    channel = open_channel(stack.env["WEFT_RUNS_ADDR"])
    try:
        store = idempotency_pb2_grpc.IdempotencyServiceStub(channel)
        claim = await store.Begin(
            idempotency_pb2.BeginRequest(account_id=owner.user_id, idempotency=idem), timeout=10
        )
        assert claim.outcome == "proceed"
        before = await orphans(stack)
        status, answer, _ = await post(http, stack, owner, "k-3", form("f.txt", data))
        assert status == 409, answer
        assert answer["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
        assert await rows(stack, owner.user_id) == set()
        assert await orphans(stack) <= before

        # The first request gives up without an answer to store: the key is free again.
        await store.Complete(
            idempotency_pb2.CompleteRequest(
                account_id=owner.user_id, idempotency=idem, http_status=400, store=False
            ),
            timeout=10,
        )
    finally:
        await channel.close()
    status, answer, headers = await post(http, stack, owner, "k-3", form("f.txt", data))
    assert status == 201, answer
    assert "Idempotent-Replayed" not in headers


async def test_concurrent_retries_store_one_attachment(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    data = files.csv_bytes(200)
    answers = await asyncio.gather(
        *(post(http, stack, owner, "k-4", form("many.csv", data)) for _ in range(8))
    )
    created = [a for s, a, h in answers if s == 201 and "Idempotent-Replayed" not in h]
    replayed = [a for s, a, h in answers if s == 201 and h.get("Idempotent-Replayed") == "true"]
    in_flight = [a for s, a, _ in answers if s == 409]
    assert len(created) == 1, answers
    assert len(created) + len(replayed) + len(in_flight) == len(answers), answers
    assert all(a == created[0] for a in replayed)
    assert all(a["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT" for a in in_flight)
    assert await rows(stack, owner.user_id) == {created[0]["data"]["id"]}
    # Once the first answer is stored, every retry replays it.
    status, again, headers = await post(http, stack, owner, "k-4", form("many.csv", data))
    assert (status, again, headers["Idempotent-Replayed"]) == (201, created[0], "true")


async def test_refusals_are_not_stored(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 4000
    status, answer, _ = await post(http, stack, owner, "k-5", form("program.txt", elf))
    assert (status, answer["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")

    two = form("a.txt", b"one")
    second = two.append(b"two", {"Content-Type": "text/plain"})
    second.set_content_disposition("form-data", name="other", filename="b.txt")
    status, answer, _ = await post(http, stack, owner, "k-5", two)
    assert (status, answer["error"]["code"]) == (400, "INVALID_PARAM")

    # Neither refusal kept the key: a fixed request with it is new, not a 409 or replay.
    status, answer, headers = await post(http, stack, owner, "k-5", form("a.txt", b"one"))
    assert status == 201, answer
    assert "Idempotent-Replayed" not in headers
    assert await rows(stack, owner.user_id) == {answer["data"]["id"]}


async def test_bad_keys_and_other_accounts(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    status, answer, _ = await post(http, stack, owner, "x" * 257, form("a.txt", b"a"))
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["param"]) == (
        "INVALID_PARAM",
        "Idempotency-Key",
    )
    assert await rows(stack, owner.user_id) == set()  # refused before anything was stored

    other = create_user(stack, f"idem-{uuid.uuid4().hex[:10]}@example.com")
    status, mine, _ = await post(http, stack, owner, "shared", form("a.txt", b"a"))
    assert status == 201
    # Keys are scoped to the account: the same key elsewhere is a new request.
    status, theirs, headers = await post(http, stack, other, "shared", form("a.txt", b"a"))
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert theirs["data"]["id"] != mine["data"]["id"]
