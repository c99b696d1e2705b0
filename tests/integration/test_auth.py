"""Accounts and API keys against the real stack: weft-admin, the gateway's 401/402/403
answers, GET /me, expiry, revocation (within the documented cache bound), last_used_at,
and key secrets never reaching a log file or the database."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest

from tests.support.runs import admin_json
from weft.auth.v1 import auth_pb2, auth_pb2_grpc
from weftcore.errors import from_rpc_error
from weftcore.grpc_client import open_channel

ALL_SCOPES = ["workflows:read", "workflows:write", "workflow_runs:create"]
# Every secret minted by this module, to grep logs and the database for at the end.
SECRETS: list[str] = []


def new_user(stack: Any, plan: str = "pro") -> dict[str, Any]:
    email = f"auth-{uuid.uuid4().hex[:10]}@example.com"
    return admin_json(stack, "users", "create", "--email", email, "--plan", plan)


def new_key(stack: Any, user_id: str, *extra: str, name: str = "test key") -> dict[str, Any]:
    key = admin_json(stack, "keys", "create", "--user", user_id, "--name", name, *extra)
    SECRETS.append(key["secret"])
    return key


@pytest.fixture(scope="module")
async def auth(stack: Any) -> AsyncIterator[auth_pb2_grpc.AuthServiceStub]:
    channel = open_channel(stack.env["WEFT_AUTH_ADDR"])
    yield auth_pb2_grpc.AuthServiceStub(channel)
    await channel.close()


async def get(stack: Any, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.base_url}{path}", headers=headers) as response:
            return response.status, await response.json(), response.headers


async def test_me_answers_exactly_the_specified_shape(stack: Any) -> None:
    user = new_user(stack, "pro")
    key = new_key(stack, user["id"], name="n8n integration")
    status, body, headers = await get(stack, "/api/v1/me", key["secret"])
    assert status == 200, body
    assert body == {
        "data": {
            "user_id": user["id"],
            "email": user["email"],
            "plan": "pro",
            "team_id": None,
            "team_role": None,
            "key_id": key["id"],
            "key_name": "n8n integration",
            "key_scopes": ALL_SCOPES,
            "workflow_allowlist": None,
        }
    }
    assert headers["X-Request-Id"].startswith("req_")
    assert key["secret"].startswith("wft_live_") and len(key["secret"]) == len("wft_live_") + 43
    assert key["id"].startswith("key_") and user["id"].startswith("usr_")


async def test_me_shows_the_allowlist_and_the_team_plan(stack: Any) -> None:
    user = new_user(stack, "free")
    team = admin_json(stack, "teams", "create", "--name", "Acme", "--plan", "team")
    admin_json(stack, "teams", "add-member", "--team", team["id"], "--user", user["id"])
    key = new_key(stack, user["id"], "--scopes", "workflows:read", "--allowlist", "wf_a", "wf_b")
    status, body, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 200, body
    assert body["data"]["plan"] == "team"
    assert body["data"]["team_id"] == team["id"]
    assert body["data"]["team_role"] == "member"
    assert body["data"]["key_scopes"] == ["workflows:read"]
    assert body["data"]["workflow_allowlist"] == ["wf_a", "wf_b"]


async def test_every_kind_of_bad_key_gets_the_same_401(stack: Any) -> None:
    user = new_user(stack)
    revoked = new_key(stack, user["id"])
    admin_json(stack, "keys", "revoke", "--key", revoked["id"])
    unknown = "wft_live_" + "A" * 43
    variants: dict[str, dict[str, str]] = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {revoked['secret']}"},
        "no prefix": {"Authorization": "Bearer sk_live_abcdef"},
        "malformed": {"Authorization": "Bearer wft_live_short"},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "revoked": {"Authorization": f"Bearer {revoked['secret']}"},
    }
    answers = []
    for name, headers in variants.items():
        status, body, response_headers = await get(stack, "/api/v1/me", **headers)
        assert status == 401, (name, body)
        assert body["error"]["request_id"] == response_headers["X-Request-Id"]
        answers.append((body["error"]["code"], body["error"]["message"]))
    assert set(answers) == {(answers[0][0], answers[0][1])}
    assert answers[0][0] == "UNAUTHENTICATED"


async def test_an_expired_key_is_refused_even_when_cached(
    stack: Any, auth: auth_pb2_grpc.AuthServiceStub
) -> None:
    user = new_user(stack)
    expires = int(time.time()) + 3
    reply = await auth.CreateKey(
        auth_pb2.CreateKeyRequest(
            user_id=user["id"], name="short", scopes=ALL_SCOPES, expires_at_unix=expires
        )
    )
    SECRETS.append(reply.secret)
    assert reply.key.expires_at
    status, body, _ = await get(stack, "/api/v1/me", reply.secret)
    assert status == 200, body  # now cached by the gateway
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.3)
    status, body, _ = await get(stack, "/api/v1/me", reply.secret)
    assert status == 401, body
    assert body["error"]["code"] == "UNAUTHENTICATED"


async def test_a_key_cannot_be_created_already_expired(
    stack: Any, auth: auth_pb2_grpc.AuthServiceStub
) -> None:
    user = new_user(stack)
    with pytest.raises(grpc.RpcError) as info:
        await auth.CreateKey(
            auth_pb2.CreateKeyRequest(
                user_id=user["id"], name="past", scopes=ALL_SCOPES, expires_at_unix=1000
            )
        )
    assert from_rpc_error(info.value).code == "INVALID_PARAM"


async def test_revocation_takes_effect_within_the_cache_bound(stack: Any) -> None:
    user = new_user(stack)
    key = new_key(stack, user["id"])
    status, _, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 200  # cached now
    revoked = admin_json(stack, "keys", "revoke", "--key", key["id"])
    assert revoked["revoked_at"]
    bound = float(stack.env.get("WEFT_AUTH_CACHE_SECONDS", "5"))
    await asyncio.sleep(bound + 0.5)
    status, body, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 401, body


async def test_free_plan_gets_402_and_upgrading_lifts_it(stack: Any) -> None:
    user = new_user(stack, "free")
    key = new_key(stack, user["id"])
    status, body, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 402, body
    assert body["error"]["code"] == "PAID_PLAN_REQUIRED"
    admin_json(stack, "users", "set-plan", "--user", user["id"], "--plan", "pro")
    await asyncio.sleep(float(stack.env.get("WEFT_AUTH_CACHE_SECONDS", "5")) + 0.5)
    status, body, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 200, body
    assert body["data"]["plan"] == "pro"


@pytest.fixture(scope="module")
async def scoped_app(stack: Any) -> AsyncIterator[str]:
    """The gateway's own auth code (require) on a probe route, against the real auth
    service: checks 403 without depending on other resources' routes."""
    from aiohttp import web

    from gateway.auth import require
    from gateway.clients import connect_services
    from gateway.config import GatewayConfig
    from gateway.http import json_response
    from gateway.keys import CONFIG, SERVICES
    from gateway.middleware import make_middleware

    config = GatewayConfig.from_env(stack.env)
    app = web.Application(middlewares=[make_middleware(config)])
    app[CONFIG] = config
    app[SERVICES] = connect_services(config)

    async def probe(request: web.Request) -> web.Response:
        principal = await require(request, request.match_info["scope"])
        return json_response({"key_id": principal.key_id})

    app.router.add_get("/probe/{scope}", probe)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await app[SERVICES].close()


async def test_missing_scope_is_403(stack: Any, scoped_app: str) -> None:
    user = new_user(stack)
    key = new_key(stack, user["id"], "--scopes", "workflow_runs:create")
    headers = {"Authorization": f"Bearer {key['secret']}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scoped_app}/probe/workflows:read", headers=headers) as r:
            body = await r.json()
            assert r.status == 403, body
            assert body["error"]["code"] == "MISSING_SCOPE"
            assert "workflows:read" in body["error"]["message"]
        async with http.get(f"{scoped_app}/probe/workflow_runs:create", headers=headers) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["key_id"] == key["id"]


async def test_public_routes_answer_403_for_a_missing_scope(stack: Any) -> None:
    user = new_user(stack)
    key = new_key(stack, user["id"], "--scopes", "workflow_runs:create")
    status, body, _ = await get(stack, "/api/v1/workflows", key["secret"])
    if status == 404 and body["error"]["message"] == "No such route.":
        pytest.skip("GET /api/v1/workflows is not served yet (issue of the runs API)")
    assert status == 403, body
    assert body["error"]["code"] == "MISSING_SCOPE"


async def test_keys_list_shows_last_use_but_never_a_secret(stack: Any) -> None:
    user = new_user(stack)
    key = new_key(stack, user["id"])
    listed = admin_json(stack, "keys", "list", "--user", user["id"])
    assert [k["id"] for k in listed] == [key["id"]]
    assert listed[0]["last_used_at"] is None
    assert "secret" not in listed[0]
    assert listed[0]["prefix"] == key["secret"][: len("wft_live_") + 4]
    status, _, _ = await get(stack, "/api/v1/me", key["secret"])
    assert status == 200
    deadline = time.monotonic() + 15
    while True:  # written in batches by the auth service, not on every request
        listed = admin_json(stack, "keys", "list", "--user", user["id"])
        if listed[0]["last_used_at"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert listed[0]["last_used_at"]


async def test_admin_errors_name_the_public_code(stack: Any) -> None:
    result = stack.admin("keys", "revoke", "--key", "key_doesnotexist", check=False)
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr
    result = stack.admin("keys", "create", "--user", "usr_nobody", "--name", "x", check=False)
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def _log_files(stack: Any) -> list[Path]:
    return [p for p in Path(stack.options.root).rglob("*.log") if p.is_file()]


async def test_secrets_never_reach_logs_or_the_database(stack: Any) -> None:
    # Make sure this module's keys exist and were used even when run alone.
    user = new_user(stack)
    key = new_key(stack, user["id"])
    await get(stack, "/api/v1/me", key["secret"])
    await get(stack, "/api/v1/me", key["secret"][:-1] + "x")
    secrets = list(SECRETS)
    assert secrets
    for path in _log_files(stack):
        text = path.read_bytes().decode("utf-8", "replace")
        for secret in secrets:
            assert secret not in text, f"a key secret is in {path}"
            assert secret[len("wft_live_") :] not in text, f"a key secret is in {path}"
    conn = await asyncpg.connect(stack.dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert any(t["table_schema"] == "auth" and t["table_name"] == "api_keys" for t in tables)
        for t in tables:
            rows = await conn.fetch(
                f'SELECT t::text AS row FROM "{t["table_schema"]}"."{t["table_name"]}" t'
            )
            dump = "\n".join(r["row"] for r in rows)
            for secret in secrets:
                assert secret[len("wft_live_") :] not in dump, (
                    f"a key secret is in {t['table_schema']}.{t['table_name']}"
                )
    finally:
        await conn.close()
