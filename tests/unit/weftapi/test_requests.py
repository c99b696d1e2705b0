"""The SDK's requests and retries against a scripted API: configuration from the
environment, one Idempotency-Key across retries, Retry-After, what is (not) retried,
typed errors, raw responses, per-call options."""

import io
from pathlib import Path

import httpx
import pytest
from weftapi import (
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    Run,
    RunTimeoutError,
    Weft,
    WeftConnectionError,
    WeftError,
    WeftTimeoutError,
)

from tests.unit.weftapi.conftest import BASE, Api, error, run


def created() -> httpx.Response:
    return httpx.Response(201, json={"data": run()})


def test_reads_the_key_and_base_url_from_the_environment(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEFT_API_KEY", "wft_live_env")
    monkeypatch.setenv("WEFT_BASE_URL", "http://env.test:1234/")
    api.script = [httpx.Response(200, json={"data": {"user_id": "usr_1", "plan": "pro"}})]
    with Weft(http_client=httpx.Client(transport=httpx.MockTransport(api))) as weft:
        me = weft.me()
    assert me.user_id == "usr_1" and me.plan == "pro"
    sent = api.seen[0]
    assert str(sent.url) == "http://env.test:1234/api/v1/me"
    assert sent.headers["Authorization"] == "Bearer wft_live_env"
    assert sent.headers["User-Agent"].startswith("weftapi-python/")


def test_no_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEFT_API_KEY", raising=False)
    with pytest.raises(WeftError, match="WEFT_API_KEY"):
        Weft()


def test_create_retries_429_5xx_and_in_flight_with_one_idempotency_key(api: Api) -> None:
    api.script = [
        error(429, "RATE_LIMITED", headers={"Retry-After": "7"}, limit=1, remaining=0),
        error(503, "SERVICE_UNAVAILABLE"),
        error(409, "IDEMPOTENCY_IN_FLIGHT"),
        httpx.ConnectError("[Errno 111] Connection refused"),
        created(),
    ]
    with api.client(max_retries=4) as weft:
        made = weft.runs.create("wf_1", "hi", params={"n": 1}, attachment_ids=["att_1"])
    assert isinstance(made, Run) and made.id == "run_1" and made.status == "pending"
    keys = {r.headers["Idempotency-Key"] for r in api.seen}
    assert len(api.seen) == 5 and len(keys) == 1 and keys != {""}
    assert api.json(0) == {"input_text": "hi", "params": {"n": 1}, "attachment_ids": ["att_1"]}
    assert api.sleeps[0] == 7.0  # Retry-After honoured
    assert all(0 <= s <= 20 for s in api.sleeps[1:]) and len(api.sleeps) == 4


def test_gives_up_after_max_retries_with_the_last_error(api: Api) -> None:
    api.script = [error(429, "RATE_LIMITED", headers={"Retry-After": "1"})] * 3
    with api.client(max_retries=2) as weft, pytest.raises(RateLimitError) as caught:
        weft.runs.create("wf_1", "hi", idempotency_key="mine")
    assert caught.value.retry_after == 1.0 and len(api.seen) == 3
    assert {r.headers["Idempotency-Key"] for r in api.seen} == {"mine"}


def test_a_call_without_idempotency_is_not_resent_after_it_may_have_worked(api: Api) -> None:
    api.script = [error(500, "INTERNAL")]
    with api.client() as weft, pytest.raises(InternalServerError):
        weft.runs.cancel("run_1")
    assert len(api.seen) == 1
    # ...but a 503 (no work started) or a refused connection is retried.
    api.script = [
        error(503, "SERVICE_UNAVAILABLE"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"data": run("canceled")}),
    ]
    with api.client() as weft:
        assert weft.runs.cancel("run_1").status == "canceled"
    assert len(api.seen) == 4


def test_other_conflicts_are_not_retried(api: Api) -> None:
    api.script = [error(409, "RUN_NOT_AWAITING_INPUT")]
    with api.client() as weft, pytest.raises(ConflictError) as caught:
        weft.runs.submit_input("run_1", {"approved": True})
    assert caught.value.code == "RUN_NOT_AWAITING_INPUT" and len(api.seen) == 1
    assert api.json(0) == {"values": {"approved": True}}


def test_api_errors_carry_the_envelope(api: Api) -> None:
    api.script = [error(400, "INVALID_PARAM", param="params.count")]
    with api.client() as weft, pytest.raises(BadRequestError) as caught:
        weft.runs.create("wf_1", "hi", params={"count": "x"})
    err = caught.value
    assert (err.status, err.code, err.param, err.request_id) == (
        400,
        "INVALID_PARAM",
        "params.count",
        "req_1",
    )
    assert "INVALID_PARAM" in str(err) and "params.count" in str(err) and "req_1" in str(err)


def test_an_answer_that_is_not_the_envelope_still_gives_a_typed_error(api: Api) -> None:
    api.script = [
        httpx.Response(502, text="<html>Bad gateway</html>", headers={"X-Request-Id": "req_px"})
    ] * 4
    with api.client() as weft, pytest.raises(InternalServerError) as caught:
        weft.workflows.get("wf_1")
    assert caught.value.code == "HTTP_502" and caught.value.request_id == "req_px"
    assert "Bad gateway" in caught.value.message
    api.script = [error(404, "NOT_FOUND")]
    with api.client() as weft, pytest.raises(NotFoundError):
        weft.runs.get("run_nope")


def test_connection_refused_reads_as_such(api: Api) -> None:
    api.script = [httpx.ConnectError("[Errno 111] Connection refused")] * 2
    with api.client(max_retries=1) as weft, pytest.raises(WeftConnectionError) as caught:
        weft.me()
    assert str(caught.value) == f"cannot reach {BASE}: connection refused"


def test_a_read_timeout_is_a_timeout_error_and_not_resent_for_a_post(api: Api) -> None:
    api.script = [httpx.ReadTimeout("slow")]
    with api.client() as weft, pytest.raises(WeftTimeoutError):
        weft.runs.submit_input("run_1", {"a": 1})
    assert len(api.seen) == 1


def test_raw_response_exposes_headers(api: Api) -> None:
    api.script = [
        httpx.Response(
            201,
            json={"data": run()},
            headers={
                "Idempotent-Replayed": "true",
                "RateLimit-Remaining": "41",
                "X-Request-Id": "req_9",
            },
        )
    ]
    with api.client() as weft:
        raw = weft.with_raw_response.runs.create("wf_1", "hi")
    assert raw.status_code == 201 and raw.idempotent_replayed
    assert raw.rate_limit_remaining == 41 and raw.headers["ratelimit-remaining"] == "41"
    assert raw.request_id == "req_9" and raw.parse().id == "run_1"


def test_per_call_options_share_the_connections(api: Api) -> None:
    api.script = [error(503, "SERVICE_UNAVAILABLE")] * 2
    with api.client(max_retries=5) as weft:
        with pytest.raises(Exception, match="SERVICE_UNAVAILABLE"):
            weft.with_options(max_retries=1, timeout=3).me()
        assert api.seen[0].extensions["timeout"]["read"] == 3
        assert weft._settings.max_retries == 5  # the original is unchanged
    assert len(api.seen) == 2


def test_wait_long_polls_until_terminal_and_times_out_with_the_run(api: Api) -> None:
    answers = [run("running"), run("running"), run("completed", result={"ok": 1})]
    api.fallback = lambda r: httpx.Response(200, json={"data": answers.pop(0)})
    with api.client() as weft:
        done = weft.runs.wait("run_1", timeout=300)
    assert done.status == "completed" and done.result == {"ok": 1} and done.done
    assert [r.url.params.get("wait") for r in api.seen] == [None, "30", "30"]
    api.fallback = lambda r: httpx.Response(200, json={"data": run("running")})
    with api.client() as weft, pytest.raises(RunTimeoutError) as caught:
        weft.runs.wait("run_1", timeout=0)
    assert caught.value.run.status == "running" and "continues" in str(caught.value)


def test_upload_resends_the_whole_file_on_retry(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("some notes\n")
    att = {"id": "att_1", "kind": "txt", "original_filename": "notes.txt"}
    api.script = [error(503, "SERVICE_UNAVAILABLE"), httpx.Response(201, json={"data": att})]
    with api.client() as weft:
        got = weft.attachments.upload(path)
    assert got.id == "att_1" and got.kind == "txt"
    assert len(api.bodies) == 2
    for body in api.bodies:  # each attempt carries the whole file
        assert body.count(b"some notes\n") == 1 and b'filename="notes.txt"' in body
    assert api.seen[0].headers["Idempotency-Key"] == api.seen[1].headers["Idempotency-Key"]
    stream = io.BytesIO(b"in memory")
    api.script = [error(503, "SERVICE_UNAVAILABLE"), httpx.Response(201, json={"data": att})]
    with api.client() as weft:
        weft.attachments.upload(stream, filename="mem.txt")
    assert b"in memory" in api.bodies[-1] and api.bodies[-1].count(b"in memory") == 1
    with pytest.raises(FileNotFoundError):
        api.client().attachments.upload(tmp_path / "missing.csv")


def test_a_long_retry_after_is_left_to_the_caller(api: Api) -> None:
    api.script = [error(429, "RATE_LIMITED", headers={"Retry-After": "3600"})]
    with api.client() as weft, pytest.raises(RateLimitError) as caught:
        weft.runs.create("wf_1", "hi")
    assert caught.value.retry_after == 3600 and len(api.seen) == 1 and api.sleeps == []


def test_ids_stay_one_path_segment(api: Api) -> None:
    api.script = [error(404, "NOT_FOUND")]
    with api.client() as weft, pytest.raises(NotFoundError):
        weft.runs.cancel("run_1/../../me?x=1")
    assert api.seen[0].url.raw_path == b"/api/v1/workflow-runs/run_1%2F..%2F..%2Fme%3Fx%3D1/cancel"


async def test_the_async_client_retries_the_same_way(api: Api) -> None:
    api.script = [
        httpx.ConnectError("[Errno 111] Connection refused"),
        error(409, "IDEMPOTENCY_IN_FLIGHT"),
        httpx.Response(201, json={"data": run()}, headers={"Idempotent-Replayed": "true"}),
    ]
    async with api.async_client() as weft:
        raw = await weft.with_raw_response.runs.create("wf_1", "hi")
    assert raw.idempotent_replayed and raw.parse().id == "run_1"
    assert len({r.headers["Idempotency-Key"] for r in api.seen}) == 1 and len(api.seen) == 3
    api.script = [httpx.ConnectError("[Errno 111] Connection refused")] * 2
    async with api.async_client(max_retries=1) as weft:
        with pytest.raises(WeftConnectionError, match="connection refused"):
            await weft.runs.get("run_1")
