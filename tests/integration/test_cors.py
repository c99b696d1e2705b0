"""CORS through the real gateway: the stack allows https://app.example.com only."""

from typing import Any

import aiohttp

from tests.support.runs import create_account

ALLOWED = "https://app.example.com"


async def test_a_preflight_from_an_allowed_origin_names_what_the_route_allows(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    async with http.options(
        f"{stack.base_url}/api/v1/workflows/wf_x/runs",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    ) as r:
        assert r.status == 204, await r.text()
        assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key"} <= allowed
        assert "Access-Control-Allow-Credentials" not in r.headers
        assert r.headers["X-Request-Id"]


async def test_other_origins_and_unknown_paths_are_refused_with_the_envelope(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    for origin, path, status, code in (
        ("https://evil.example", "/api/v1/me", 403, "CORS_ORIGIN_NOT_ALLOWED"),
        (ALLOWED, "/api/v1/nothing-here", 404, "NOT_FOUND"),
    ):
        async with http.options(
            stack.base_url + path,
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        ) as r:
            body = await r.json()
            assert r.status == status, body
            assert body["error"]["code"] == code
            assert "Access-Control-Allow-Origin" not in r.headers or origin == ALLOWED


async def test_answers_to_an_allowed_origin_expose_the_headers_clients_read(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack, "1")
    async with http.get(
        f"{stack.base_url}/api/v1/me", headers={**account.headers, "Origin": ALLOWED}
    ) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
        assert "Origin" in r.headers.getall("Vary")
    # Errors too, or a browser could not read the envelope.
    async with http.get(f"{stack.base_url}/api/v1/me", headers={"Origin": ALLOWED}) as r:
        assert r.status == 401
        assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    async with http.get(
        f"{stack.base_url}/api/v1/me", headers={**account.headers, "Origin": "https://evil.example"}
    ) as r:
        assert r.status == 200
        assert "Access-Control-Allow-Origin" not in r.headers
