"""weft_client against a small in-process aiohttp fake: retries with backoff on 429/5xx
and connection errors reusing ONE Idempotency-Key, Retry-After, typed errors, wait."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from weft_client import (
    AsyncWeft,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    Weft,
    WeftConnectionError,
    WeftTimeoutError,
)
from weft_client._transport import Transport
from weft_client.cli import coerce_params


@dataclass
class Fake:
    """Scripted answers for POST runs; records every request it saw."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["running", "completed"])


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": f"{code}.", "request_id": "req_fake"}}
    if code == "INVALID_PARAM":
        body["error"]["param"] = "params.count"
    return web.json_response(body, status=status, headers=headers)


def make_app(fake: Fake) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        fake.seen.append(
            {
                "key": request.headers.get("Idempotency-Key"),
                "auth": request.headers.get("Authorization"),
                "body": await request.json(),
            }
        )
        if fake.script:
            status, headers = fake.script.pop(0)
            if status == 0:  # drop the connection: the client sees a connection error
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            return _error(
                status,
                {429: "RATE_LIMITED", 400: "INVALID_PARAM", 409: "IDEMPOTENCY_IN_FLIGHT"}.get(
                    status, "INTERNAL"
                ),
                headers,
            )
        data = {"id": "run_1", "workflow_id": "wf_1", "status": "pending", "created_at": "t"}
        return web.json_response({"data": data}, status=201)

    async def get_run(request: web.Request) -> web.Response:
        if request.match_info["run_id"] != "run_1":
            return _error(404, "NOT_FOUND")
        fake.seen.append({"wait": request.query.get("wait")})
        status = fake.statuses.pop(0) if len(fake.statuses) > 1 else fake.statuses[0]
        return web.json_response({"data": {"id": "run_1", "status": status, "result": {"ok": 1}}})

    async def upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        assert part is not None
        content = await part.read()  # type: ignore[union-attr]
        fake.seen.append({"key": request.headers.get("Idempotency-Key"), "bytes": len(content)})
        if fake.script:
            status, headers = fake.script.pop(0)
            return _error(status, "SERVICE_UNAVAILABLE", headers)
        return web.json_response({"data": {"id": "att_1", "kind": "txt"}}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/workflows/{wf}/runs", create)
    app.router.add_get("/api/v1/workflow-runs/{run_id}", get_run)
    app.router.add_post("/api/v1/attachments", upload)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, Fake]]:
    fake = Fake()
    srv = TestServer(make_app(fake))
    await srv.start_server()
    yield srv, fake
    await srv.close()


FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)


def _client(srv: TestServer, retry: RetryPolicy = FAST) -> AsyncWeft:
    return AsyncWeft("wft_live_x", str(srv.make_url("/")), retry=retry)


async def test_create_retries_5xx_429_and_drops_with_one_idempotency_key(
    server: tuple[TestServer, Fake],
) -> None:
    srv, fake = server
    fake.script = [(503, {}), (0, {}), (429, {"Retry-After": "0"})]
    async with _client(srv) as weft:
        run = await weft.runs.create("wf_1", "hi", params={"count": 2})
    assert run["id"] == "run_1"
    keys = [s["key"] for s in fake.seen]
    assert len(keys) == 4 and len(set(keys)) == 1 and keys[0]
    assert all(s["auth"] == "Bearer wft_live_x" for s in fake.seen)
    assert fake.seen[0]["body"] == {"input_text": "hi", "params": {"count": 2}}


async def test_a_retry_that_overtook_its_request_waits_for_the_replay(
    server: tuple[TestServer, Fake],
) -> None:
    srv, fake = server
    fake.script = [(0, {}), (409, {})]  # dropped, then the retry finds it still running
    async with _client(srv) as weft:
        run = await weft.runs.create("wf_1", "hi")
    assert run["id"] == "run_1"
    assert len(fake.seen) == 3 and len({s["key"] for s in fake.seen}) == 1


async def test_callers_idempotency_key_is_sent(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    fake.script = [(500, {})]
    async with _client(srv) as weft:
        await weft.runs.create("wf_1", "hi", idempotency_key="order-42")
    assert [s["key"] for s in fake.seen] == ["order-42", "order-42"]


async def test_each_create_gets_a_fresh_key(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    async with _client(srv) as weft:
        await weft.runs.create("wf_1", "a")
        await weft.runs.create("wf_1", "a")
    assert fake.seen[0]["key"] != fake.seen[1]["key"]


async def test_retry_after_is_honoured() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = Fake(script=[(429, {"Retry-After": "7"}), (503, {})])
    srv = TestServer(make_app(fake))
    await srv.start_server()
    try:
        t = Transport("k", str(srv.make_url("/")), RetryPolicy(3, 0.5, 20), 10, sleep=sleep)
        answer = await t.request("POST", "/api/v1/workflows/wf/runs", json={"input_text": ""})
        await t.close()
    finally:
        await srv.close()
    assert answer.status == 201
    assert slept[0] == 7  # Retry-After, not the backoff
    assert 0 <= slept[1] <= 1.0  # full jitter under base * 2**1


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_retries=10, base_delay=1, max_delay=8)
    for attempt, cap in [(0, 1), (1, 2), (2, 4), (3, 8), (6, 8)]:
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jittered over the whole range, not fixed
    assert policy.delay(5, 3.0) == 3.0


async def test_gives_up_with_a_typed_error_after_max_retries(
    server: tuple[TestServer, Fake],
) -> None:
    srv, fake = server
    fake.script = [(429, {"Retry-After": "0"})] * 4
    async with _client(srv) as weft:
        with pytest.raises(RateLimitError) as caught:
            await weft.runs.create("wf_1", "hi")
    assert len(fake.seen) == 4  # 1 + max_retries
    err = caught.value
    assert (err.status, err.code, err.request_id) == (429, "RATE_LIMITED", "req_fake")
    assert err.retry_after == 0


async def test_4xx_is_not_retried_and_carries_param(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    fake.script = [(400, {})]
    async with _client(srv) as weft:
        with pytest.raises(BadRequestError) as caught:
            await weft.runs.create("wf_1", "hi")
        with pytest.raises(NotFoundError):
            await weft.runs.get("run_nope")
    assert len(fake.seen) == 1
    assert (caught.value.code, caught.value.param) == ("INVALID_PARAM", "params.count")


async def test_connection_refused_becomes_connection_error() -> None:
    async with AsyncWeft("k", "http://127.0.0.1:9", retry=FAST) as weft:
        with pytest.raises(WeftConnectionError):
            await weft.runs.get("run_1")


async def test_wait_long_polls_until_terminal(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    async with _client(srv) as weft:
        run = await weft.runs.wait("run_1", timeout=300)
    assert run["status"] == "completed"
    assert [s["wait"] for s in fake.seen] == [None, "30"]


async def test_wait_times_out(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    fake.statuses = ["running"]
    async with _client(srv) as weft:
        with pytest.raises(WeftTimeoutError):
            await weft.runs.wait("run_1", timeout=0.5, poll=1)


async def test_upload_retries_resend_the_file_with_one_key(
    server: tuple[TestServer, Fake], tmp_path: Path
) -> None:
    srv, fake = server
    fake.script = [(503, {})]
    path = tmp_path / "notes.txt"
    path.write_text("hello world")
    async with _client(srv) as weft:
        att = await weft.attachments.upload(path)
    assert att["id"] == "att_1"
    assert [s["bytes"] for s in fake.seen] == [11, 11]
    assert fake.seen[0]["key"] == fake.seen[1]["key"]


async def test_sync_client_same_behaviour(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    fake.script = [(503, {})]

    def use() -> tuple[dict[str, Any], dict[str, Any]]:
        with Weft("wft_live_x", str(srv.make_url("/")), retry=FAST) as weft:
            created = weft.runs.create("wf_1", "hi")
            return created, weft.runs.wait(created["id"], timeout=30)

    created, done = await asyncio.to_thread(use)
    assert created["status"] == "pending" and done["status"] == "completed"
    assert fake.seen[0]["key"] == fake.seen[1]["key"]


async def test_sync_client_raises_typed_errors(server: tuple[TestServer, Fake]) -> None:
    srv, fake = server
    fake.script = [(503, {})] * 2

    def use() -> None:
        with Weft("k", str(srv.make_url("/")), retry=RetryPolicy(1, 0.001, 0.01)) as weft:
            weft.runs.create("wf_1", "hi")

    with pytest.raises(ServiceUnavailableError):
        await asyncio.to_thread(use)


def test_cli_params_are_typed_by_the_declared_fields() -> None:
    fields: list[dict[str, Any]] = [
        {"name": "n", "type": "integer"},
        {"name": "x", "type": "number"},
        {"name": "b", "type": "boolean"},
        {"name": "t", "type": "text"},
        {"name": "s", "type": "select", "constraints": {"options": [1, "two"]}},
        {"name": "j", "type": "json"},
    ]
    pairs = [("n", "3"), ("x", "2"), ("b", "true"), ("t", "42"), ("s", "1"), ("j", '{"a": 1}')]
    assert coerce_params(pairs, fields) == {
        "n": 3,
        "x": 2.0,
        "b": True,
        "t": "42",
        "s": 1,
        "j": {"a": 1},
    }
    assert coerce_params([("n", "3"), ("w", "word")], None) == {"n": 3, "w": "word"}
    assert json.dumps(coerce_params([("n", "x")], fields)) == '{"n": "x"}'


async def test_cli_follow_shows_stages_from_the_event_stream() -> None:
    import io

    from weft_client.cli import Progress, follow

    run = {"id": "run_1", "workflow_id": "wf_1", "status": "running", "cost_breakdown": []}
    done = {**run, "status": "completed", "result": {"ok": 1}}
    frames = [
        ("stage.started", "s1", run),
        ("stage.completed", "s1", run),
        ("run.completed", None, done),
    ]

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for seq, (kind, stage, snapshot) in enumerate(frames, 1):
            data = json.dumps({"id": f"evt_{seq}", "type": kind, "stage": stage, "data": snapshot})
            await response.write(f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode())
        return response

    async def get_run(request: web.Request) -> web.Response:
        return web.json_response({"data": done})

    app = web.Application()
    app.router.add_get("/api/v1/workflow-runs/run_1/events", events)
    app.router.add_get("/api/v1/workflow-runs/run_1", get_run)
    srv = TestServer(app)
    await srv.start_server()
    out = io.StringIO()
    try:
        async with _client(srv) as weft:
            final = await follow(weft, run, 30, Progress(out))
    finally:
        await srv.close()
    assert final["status"] == "completed"
    lines = out.getvalue()
    assert "> stage s1 started" in lines and "+ stage s1 completed" in lines
    assert lines.index("started") < lines.index("+ stage s1 completed")
    assert "run run_1: completed" in lines and "long-polling" not in lines


async def test_cli_follow_falls_back_to_long_polling(server: tuple[TestServer, Fake]) -> None:
    import io

    from weft_client.cli import Progress, follow

    srv, _fake = server  # the fake has no /events route: 404
    out = io.StringIO()
    async with _client(srv) as weft:
        final = await follow(weft, {"id": "run_1", "status": "pending"}, 30, Progress(out))
    assert final["status"] == "completed"
    assert "long-polling" in out.getvalue() and "run run_1: completed" in out.getvalue()
