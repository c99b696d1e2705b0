"""Public endpoints through the whole stack (spec/API.md, v1.1): a call without a key
runs as the workflow's owner and bills them, is limited per client address and per
endpoint, may be capped in cost, answers configured browser origins, and reads its run
only with the run token it was given. Endpoints that need a key keep needing one.

Client addresses differ by binding the client to other loopback addresses (127.0.0.x),
so the gateway sees them as the peer address, as it would without a proxy in front."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.billing import Stub, priced_model
from tests.support.runs import Account, admin_json, create_account, create_user, wait_for
from weft.billing.v1 import billing_pb2 as pb

pytestmark = pytest.mark.timeout(180)

ECHO = {"id": "echo", "type": "template", "template": "{{ params.topic }} / {{ input_text }}"}
FIELDS = [{"name": "topic", "type": "text", "required": True}, {"name": "doc", "type": "file"}]


def slug() -> str:
    return f"pub-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_account(stack, "1.00")


async def publish(
    http: aiohttp.ClientSession,
    stack: Stack,
    owner: Account,
    endpoint: dict[str, Any],
    stages: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """A published workflow of `owner` with these endpoint settings: (id, slug)."""
    name = slug()
    definition = {
        "name": "Public echo",
        "fields": FIELDS,
        "stages": stages or [ECHO],
        "endpoint": {"slug": name, **endpoint},
    }
    base = f"{stack.base_url}/api/v1/workflows"
    async with http.post(base, json=definition, headers=owner.headers) as response:
        created = await response.json()
        assert response.status == 201, created
    workflow_id = created["data"]["id"]
    async with http.post(f"{base}/{workflow_id}/publish", headers=owner.headers) as response:
        assert response.status == 201, await response.text()
    return workflow_id, name


async def call(
    stack: Stack, name: str, body: Any = None, ip: str = "127.0.0.1", **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    """POST the endpoint from the loopback address `ip`, without a key unless given."""
    connector = aiohttp.TCPConnector(local_addr=(ip, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"{stack.base_url}/api/v1/endpoints/{name}", json=body, **kwargs
        ) as response:
            return response.status, await response.json(), response.headers


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read_with_token(
    http: aiohttp.ClientSession, url: str, token: str, wait: int = 0
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(url, params={"wait": str(wait)}, headers=headers) as response:
        return response.status, await response.json()


async def test_a_keyless_call_runs_as_the_owner_and_reads_its_run_with_its_token(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    workflow_id, name = await publish(http, stack, owner, {"auth": "public"})
    status, body, headers = await call(stack, name, {"topic": "otters", "input_text": "hi"})
    assert status == 201, body
    created = body["data"]
    assert created["workflow_id"] == workflow_id
    assert created["run_token"].startswith("wrt_")
    assert created["links"]["self"].endswith(f"/api/v1/endpoints/{name}/runs/{created['id']}")
    # The client's own per-minute limit, not the owner's hourly budget.
    assert headers["RateLimit-Limit"] == "10"
    status, read = await read_with_token(http, created["links"]["self"], created["run_token"], 30)
    assert status == 200, read
    assert read["data"]["status"] == "completed" and read["data"]["result"] == "otters / hi"
    # The run is the owner's: they see it with their key like any other.
    run = await wait_for(http, stack, owner, created["id"])
    assert run["result"] == "otters / hi"

    # Without the token, with another run's token, or at another endpoint: refused.
    status, other, _ = await call(stack, name, {"topic": "x"})
    assert status == 201
    other_token = other["data"]["run_token"]
    for token in ("", "wrt_nope", other_token):
        status, refused = await read_with_token(http, created["links"]["self"], token)
        assert status == 401 and refused["error"]["code"] == "UNAUTHENTICATED"
    _, second = await publish(http, stack, owner, {"auth": "public"})
    elsewhere = created["links"]["self"].replace(f"/endpoints/{name}/", f"/endpoints/{second}/")
    status, refused = await read_with_token(http, elsewhere, created["run_token"])
    assert status == 404 and refused["error"]["code"] == "NOT_FOUND"


async def test_an_endpoint_that_needs_a_key_still_does(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    _, name = await publish(http, stack, owner, {})
    status, body, _ = await call(stack, name, {"topic": "x"})
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED"
    # An unknown slug answers the same 401 to a caller without a key.
    status, body, _ = await call(stack, f"nope-{uuid.uuid4().hex[:8]}", {"topic": "x"})
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED"
    status, body, _ = await call(stack, name, {"topic": "x"}, headers=owner.headers)
    assert status == 201, body
    assert "run_token" not in body["data"]


async def test_keyless_calls_are_validated_and_may_not_name_the_owners_files(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    _, name = await publish(http, stack, owner, {"auth": "public"})
    # The seed's troubleshooting table holds: a missing field is a 400 naming it.
    status, body, _ = await call(stack, name, {"input_text": "hi"}, ip="127.0.0.3")
    assert status == 400 and body["error"]["param"] == "topic", body
    # The owner's stored files are not a stranger's to name, nor is a webhook.
    form = aiohttp.FormData()
    form.add_field("file", b"secret,1\n", filename="owner.csv", content_type="text/csv")
    async with http.post(
        f"{stack.base_url}/api/v1/attachments", data=form, headers=owner.headers
    ) as response:
        attachment = (await response.json())["data"]["id"]
    for body_of in (
        {"topic": "x", "attachment_ids": [attachment]},
        {"topic": "x", "doc": attachment},
        {"topic": "x", "webhook_url": "https://example.com/hook"},
    ):
        status, body, _ = await call(stack, name, body_of, ip="127.0.0.3")
        assert status == 400 and body["error"]["code"] == "INVALID_PARAM", body
    # A version other than the latest published needs a key.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"{stack.base_url}/api/v1/endpoints/{name}?version=draft", json={"topic": "x"}
        ) as response:
            refused = await response.json()
            assert response.status == 400 and refused["error"]["param"] == "version"
    # Files sent with the call itself are its own to use.
    form = aiohttp.FormData()
    form.add_field("topic", "files")
    form.add_field("doc", b"a,b\n1,2\n", filename="mine.csv", content_type="text/csv")
    status, body, _ = await call(stack, name, None, ip="127.0.0.3", data=form)
    assert status == 201, body
    run = await wait_for(http, stack, owner, body["data"]["id"])
    assert run["status"] == "completed", run


async def test_keyless_calls_are_limited_per_client_address_and_per_endpoint(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    limits = {"per_ip_per_minute": 2, "per_minute": 3}
    _, name = await publish(http, stack, owner, {"auth": "public", "rate_limit": limits})
    answers = [(await call(stack, name, {"topic": "x"}, ip="127.0.0.4"))[0] for _ in range(3)]
    assert answers == [201, 201, 429]
    status, body, headers = await call(stack, name, {"topic": "x"}, ip="127.0.0.4")
    assert status == 429 and body["error"]["code"] == "RATE_LIMITED"
    assert "from your address" in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
    # Another address has its own allowance, until the endpoint's own is used up.
    assert (await call(stack, name, {"topic": "x"}, ip="127.0.0.5"))[0] == 201
    status, body, _ = await call(stack, name, {"topic": "x"}, ip="127.0.0.6")
    assert status == 429 and "at this endpoint" in body["error"]["message"]
    # A caller with a key is not a keyless caller: none of this applies.
    status, _, _ = await call(stack, name, {"topic": "x"}, ip="127.0.0.4", headers=owner.headers)
    assert status == 201


async def test_keyless_idempotency_keys_are_each_clients_own(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    _, name = await publish(http, stack, owner, {"auth": "public"})
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    status, first, _ = await call(stack, name, {"topic": "a"}, ip="127.0.0.7", headers=key)
    assert status == 201
    status, again, headers = await call(stack, name, {"topic": "a"}, ip="127.0.0.7", headers=key)
    assert status == 201 and headers["Idempotent-Replayed"] == "true"
    assert again["data"]["id"] == first["data"]["id"]
    # A stranger using the same key gets their own run, not a replay of someone else's.
    status, stranger, headers = await call(stack, name, {"topic": "b"}, ip="127.0.0.8", headers=key)
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert stranger["data"]["id"] != first["data"]["id"]


async def captures_of(billing: Stub, account_id: str, run_id: str) -> list[pb.LedgerEntry]:
    """The run's capture entries, once billing has taken its run.completed (async)."""
    deadline = time.monotonic() + 30
    while True:
        ledger = await billing.ListLedger(pb.ListLedgerRequest(account_id=account_id, limit=100))
        captures = [e for e in ledger.entries if e.kind == "capture" and e.run_id == run_id]
        if captures or time.monotonic() > deadline:
            return captures
        await asyncio.sleep(0.2)


async def test_keyless_runs_bill_the_owner_within_the_cost_cap(
    stack: Stack, http: aiohttp.ClientSession, billing: Stub
) -> None:
    payer = create_account(stack, "1.00")
    model = await priced_model(billing, "public-endpoint")
    llm = {"id": "ask", "type": "llm", "model": model, "prompt": "{{ input_text }}"}
    capped = {"auth": "public", "max_cost_usd": 0.05}
    _, name = await publish(http, stack, payer, capped, [{**llm, "max_tokens": 100}])
    status, body, _ = await call(stack, name, {"topic": "t", "input_text": "hello"}, ip="127.0.0.9")
    assert status == 201, body
    run = await wait_for(http, stack, payer, body["data"]["id"])
    assert run["status"] == "completed", run
    captures = await captures_of(billing, payer.user_id, run["id"])
    assert len(captures) == 1 and captures[0].amount_micros > 0
    # An estimate over the cap (32,768 output tokens at $20/Mtok: $0.66) is refused,
    # and nothing is held.
    _, pricey = await publish(http, stack, payer, capped, [{**llm, "max_tokens": 32_768}])
    before = await billing.GetBalance(pb.GetBalanceRequest(account_id=payer.user_id))
    status, body, _ = await call(stack, pricey, {"topic": "t"}, ip="127.0.0.9")
    assert status == 402 and body["error"]["code"] == "COST_CAP_EXCEEDED", body
    assert "$0.05" in body["error"]["message"]
    after = await billing.GetBalance(pb.GetBalanceRequest(account_id=payer.user_id))
    assert after.reserved_micros == before.reserved_micros


async def test_a_keyless_call_the_owner_cannot_pay_for_is_refused(
    stack: Stack, http: aiohttp.ClientSession, billing: Stub
) -> None:
    # Keyless callers spend the owner's credits: without any, 402 as to the owner's key.
    broke = create_user(stack)
    model = await priced_model(billing, "public-broke")
    stages = [{"id": "ask", "type": "llm", "model": model, "prompt": "{{ input_text }}"}]
    _, name = await publish(http, stack, broke, {"auth": "public"}, stages)
    status, body, _ = await call(stack, name, {"topic": "t", "input_text": "x"}, ip="127.0.0.10")
    assert status == 402 and body["error"]["code"] == "INSUFFICIENT_CREDITS", body


async def test_a_public_endpoint_answers_its_own_browser_origins(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    origin = "https://shop.example"
    _, name = await publish(http, stack, owner, {"auth": "public", "cors_origins": [origin]})
    url = f"{stack.base_url}/api/v1/endpoints/{name}"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    async with http.options(url, headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == origin
    async with http.options(url, headers={**preflight, "Origin": "https://evil.example"}) as r:
        assert r.status == 403
    status, _, headers = await call(stack, name, {"topic": "x"}, headers={"Origin": origin})
    assert status == 201 and headers["Access-Control-Allow-Origin"] == origin
    status, _, headers = await call(stack, name, {}, headers={"Origin": origin})
    assert status == 400 and headers["Access-Control-Allow-Origin"] == origin  # errors too
    status, _, headers = await call(
        stack, name, {"topic": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in headers


async def test_the_workflow_shows_its_endpoint_settings(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    workflow_id, name = await publish(
        http, stack, owner, {"auth": "public", "max_cost_usd": 0.5, "rate_limit": {"per_minute": 7}}
    )
    async with http.get(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}", headers=owner.headers
    ) as response:
        shown = (await response.json())["data"]["endpoint"]
    assert shown == {
        "slug": name,
        "url": f"{stack.base_url}/api/v1/endpoints/{name}",
        "auth": "public",
        "max_cost_usd": 0.5,
        "rate_limit": {"per_ip_per_minute": 10, "per_minute": 7},
        "cors_origins": [],
    }
    # endpoint.slug and slug must agree.
    bad = {"slug": slug(), "name": "x", "stages": [ECHO], "endpoint": {"slug": slug()}}
    async with http.post(
        f"{stack.base_url}/api/v1/workflows", json=bad, headers=owner.headers
    ) as response:
        refused = await response.json()
    assert response.status == 400 and refused["error"]["param"] == "endpoint.slug"


async def test_a_team_workflow_bills_the_team_within_its_publishers_allocation(
    stack: Stack, http: aiohttp.ClientSession, billing: Stub
) -> None:
    team = admin_json(stack, "teams", "create", "--name", f"t-{uuid.uuid4().hex[:6]}")
    publisher = create_user(stack, plan="team")
    admin_json(stack, "teams", "add-member", "--team", team["id"], "--user", publisher.user_id)
    admin_json(
        stack, "allocations", "set", "--team", team["id"], "--user", publisher.user_id,
        "--monthly-usd", "1",
    )  # fmt: skip
    await billing.Grant(pb.GrantRequest(account_id=team["id"], amount_micros=1_000_000))
    model = await priced_model(billing, "public-team")
    stages = [{"id": "ask", "type": "llm", "model": model, "prompt": "{{ input_text }}"}]
    _, name = await publish(http, stack, publisher, {"auth": "public"}, stages)
    status, body, _ = await call(stack, name, {"topic": "t", "input_text": "hi"}, ip="127.0.0.11")
    assert status == 201, body
    run = await wait_for(http, stack, publisher, body["data"]["id"])
    assert run["status"] == "completed", run
    [capture] = await captures_of(billing, team["id"], run["id"])
    assert capture.user_id == publisher.user_id and capture.amount_micros > 0
