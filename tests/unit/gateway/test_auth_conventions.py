"""Pure helpers of the API conventions: canonical body hashes, rate-limit headers and the
gateway's idempotency helper for uploads (with a fake IdempotencyService stub)."""

from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway import idempotency
from gateway.keys import SERVICES
from gateway.ratelimit import rate_limit_headers, rate_limited_headers
from services.runs.domain.create import RateLimitState
from weft.idempotency.v1 import idempotency_pb2
from weftcore.canonical import json_body_hash, multipart_body_hash
from weftcore.errors import InvalidArgument, ResourceExhausted


def test_json_hash_ignores_key_order_and_whitespace_but_not_values() -> None:
    a = json_body_hash({"input_text": "hi", "params": {"a": 1, "b": [1, 2]}})
    b = json_body_hash({"params": {"b": [1, 2], "a": 1}, "input_text": "hi"})
    assert a == b and len(a) == 64
    assert a != json_body_hash({"input_text": "hi", "params": {"a": 1, "b": [2, 1]}})
    assert json_body_hash({"n": 1}) != json_body_hash({"n": "1"})


def test_multipart_hash_covers_fields_and_file_digests_in_any_order() -> None:
    one = multipart_body_hash([("a", "1"), ("b", "2")], [("file", "d1"), ("x", "d2")])
    two = multipart_body_hash([("b", "2"), ("a", "1")], [("x", "d2"), ("file", "d1")])
    assert one == two
    assert one != multipart_body_hash([("a", "1"), ("b", "2")], [("file", "d3"), ("x", "d2")])
    assert one != json_body_hash({"a": "1", "b": "2"})


def test_success_headers() -> None:
    assert rate_limit_headers(RateLimitState(limit=1000, remaining=998, reset_seconds=3590)) == {
        "RateLimit-Limit": "1000",
        "RateLimit-Remaining": "998",
        "RateLimit-Reset": "3590",
    }
    assert rate_limit_headers(None) == {}


def test_429_headers_from_the_error_as_it_crosses_grpc() -> None:
    # Over gRPC the extra arrives as strings.
    err = ResourceExhausted(
        "slow down",
        code="RATE_LIMITED",
        extra={"limit": "5", "remaining": "0", "retry_after": "42"},
    )
    assert rate_limited_headers(err) == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "42",
        "Retry-After": "42",
    }
    assert rate_limited_headers(InvalidArgument("bad")) == {}


class _FakeIdempotency:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.completed: list[Any] = []

    async def Begin(self, req: Any, timeout: float) -> Any:
        return idempotency_pb2.BeginResponse(
            outcome=self.outcome, http_status=201, body_json='{"data":{"id":"att_1"}}'
        )

    async def Complete(self, req: Any, timeout: float) -> Any:
        self.completed.append(req)
        return idempotency_pb2.CompleteResponse()


def _request(idempotency: _FakeIdempotency, headers: dict[str, str]) -> web.Request:
    app = web.Application()
    app[SERVICES] = SimpleNamespace(idempotency=idempotency)  # type: ignore[misc]
    return make_mocked_request("POST", "/api/v1/attachments", headers=headers, app=app)


async def test_upload_idempotency_proceeds_stores_and_replays() -> None:
    store = _FakeIdempotency("proceed")
    request = _request(store, {"Idempotency-Key": "k1"})
    idem, replay = await idempotency.begin(request, "usr_1", "hash")
    assert replay is None and idem is not None
    assert (idem.key, idem.method, idem.path) == ("k1", "POST", "/api/v1/attachments")
    await idempotency.complete(request, "usr_1", idem, web.Response(status=201, text="{}"))
    await idempotency.complete(request, "usr_1", idem, web.Response(status=415, text="{}"))
    assert [(c.store, c.http_status, c.body_json) for c in store.completed] == [
        (True, 201, "{}"),
        (False, 415, ""),
    ]
    replayed = await idempotency.begin(
        _request(_FakeIdempotency("replay"), {"Idempotency-Key": "k"}), "u", "h"
    )
    assert replayed[0] is None and replayed[1] is not None
    assert replayed[1].status == 201 and replayed[1].headers["Idempotent-Replayed"] == "true"
    assert await idempotency.begin(_request(store, {}), "usr_1", "h") == (None, None)
    with pytest.raises(InvalidArgument) as info:
        await idempotency.begin(_request(store, {"Idempotency-Key": "x" * 257}), "u", "h")
    assert info.value.param == "Idempotency-Key"
