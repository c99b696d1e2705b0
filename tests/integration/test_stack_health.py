"""The platform foundation against the real stack: readiness, envelope, request ids."""

import asyncio
import os

import aiohttp
import pytest

from devstack.stack import Stack


async def _ready(stack: Stack) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.base_url}/readyz") as response:
            return response.status, await response.json()


async def _wait_ready_state(stack: Stack, want: int, seconds: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status, body = await _ready(stack)
        if status == want:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz stayed {status}: {body}")
        await asyncio.sleep(0.2)


async def test_readyz_lists_every_dependency(stack: Stack) -> None:
    status, body = await _ready(stack)
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["checks"] == {
        name: "ok"
        for name in (
            "auth",
            "runs",
            "storage",
            "billing",
            "database",
            "nats",
            "object_storage",
            "workers",
        )
    }


@pytest.mark.parametrize(
    ("process", "check"),
    [
        ("nats", "nats"),
        ("postgres", "database"),
        ("s3", "object_storage"),
        ("worker", "workers"),
    ],
)
async def test_readyz_turns_503_when_a_dependency_stops_and_recovers(
    stack: Stack, process: str, check: str
) -> None:
    stack.stop(process)
    try:
        body = await _wait_ready_state(stack, 503)
        assert body["checks"][check] != "ok"
        assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert check in body["error"]["message"]
        assert body["error"]["request_id"].startswith("req_")
    finally:
        stack.start(process)
    body = await _wait_ready_state(stack, 200)
    assert all(state == "ok" for state in body["checks"].values())


async def test_readyz_names_a_stopped_service(stack: Stack) -> None:
    stack.stop("billing")
    try:
        body = await _wait_ready_state(stack, 503)
        assert body["checks"]["billing"] == "unreachable"
        assert body["checks"]["auth"] == "ok"
    finally:
        stack.start("billing")
    await _wait_ready_state(stack, 200)


async def test_unknown_route_and_wrong_method_use_the_envelope(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.base_url}/api/v1/nope") as response:
            assert response.status == 404
            body = await response.json()
            assert body["error"]["code"] == "NOT_FOUND"
            assert body["error"]["request_id"] == response.headers["X-Request-Id"]
        async with http.delete(f"{stack.base_url}/api/v1/me") as response:
            assert response.status == 405
            assert (await response.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
            assert "GET" in response.headers["Allow"]


async def test_request_id_is_echoed_and_reaches_the_service_logs(stack: Stack) -> None:
    rid = "test-rid-" + os.urandom(6).hex()
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.base_url}/api/v1/me",
            headers={"X-Request-Id": rid, "Authorization": "Bearer wft_live_" + "x" * 43},
        ) as response:
            assert response.status == 401
            assert response.headers["X-Request-Id"] == rid
            assert (await response.json())["error"]["request_id"] == rid
    # The auth service logs the failed authentication with the caller's request id.
    log_text = stack.processes["auth"].log_path.read_text()
    assert rid in log_text


async def test_invalid_request_id_is_replaced(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.base_url}/healthz", headers={"X-Request-Id": "x" * 129}
        ) as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"].startswith("req_")


async def test_metrics_are_exposed(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.base_url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    assert "weft_http_requests_total" in text
