"""The gateway's principal cache: TTL bound, key expiry, size bound, allowlist checks."""

import time

import pytest

from gateway.auth import MAX_CACHE_SECONDS, PrincipalCache, check_workflow_allowed
from weft.auth.v1 import auth_pb2
from weftcore.errors import NotFound


def principal(**fields: object) -> auth_pb2.Principal:
    return auth_pb2.Principal(user_id="usr_1", key_id="key_1", plan="pro", **fields)  # type: ignore[arg-type]


def test_entries_live_no_longer_than_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache = PrincipalCache(ttl=5)
    cache.put(b"h", principal())
    clock[0] += 4.9
    assert cache.get(b"h") is not None
    clock[0] += 0.1
    assert cache.get(b"h") is None


def test_ttl_is_capped_and_zero_disables() -> None:
    assert PrincipalCache(ttl=3600).ttl == MAX_CACHE_SECONDS
    cache = PrincipalCache(ttl=0)
    cache.put(b"h", principal())
    assert cache.get(b"h") is None


def test_a_cached_key_stops_at_its_expiry() -> None:
    cache = PrincipalCache(ttl=5)
    cache.put(b"old", principal(expires_at_unix=int(time.time()) - 1))
    cache.put(b"new", principal(expires_at_unix=int(time.time()) + 60))
    assert cache.get(b"old") is None
    assert cache.get(b"new") is not None


def test_the_cache_is_bounded() -> None:
    cache = PrincipalCache(ttl=5, max_entries=3)
    for i in range(5):
        cache.put(bytes([i]), principal())
    assert cache.get(bytes([0])) is None and cache.get(bytes([1])) is None
    assert all(cache.get(bytes([i])) is not None for i in (2, 3, 4))


def test_allowlisted_out_workflows_are_not_found() -> None:
    open_key = principal()
    listed = principal(has_allowlist=True, workflow_allowlist=["wf_a"])
    empty = principal(has_allowlist=True)
    check_workflow_allowed(open_key, "wf_b")
    check_workflow_allowed(listed, "wf_a")
    for p in (listed, empty):
        with pytest.raises(NotFound):
            check_workflow_allowed(p, "wf_b")
