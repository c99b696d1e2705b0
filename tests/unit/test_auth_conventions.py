"""Pure helpers of the API conventions: canonical body hashes and rate-limit headers."""

from gateway.ratelimit import rate_limit_headers, rate_limited_headers
from services.runs.create import RateLimitState
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
