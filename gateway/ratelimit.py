"""RateLimit-* and Retry-After headers for run-creating responses (spec/API.md, Rate limits)."""

from typing import Any

from weftcore.errors import WeftError

RATE_LIMITED = "RATE_LIMITED"


def rate_limit_headers(state: Any) -> dict[str, str]:
    """Headers of a successful creation from a RateLimitState (runs_pb2 or the dataclass);
    none when the state carries no limit (e.g. a replay)."""
    if state is None or not getattr(state, "limit", 0):
        return {}
    return {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": str(state.reset_seconds),
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def rate_limited_headers(err: WeftError) -> dict[str, str]:
    """Headers of a 429 RATE_LIMITED answer, from the error's extra limit/retry_after."""
    if err.code != RATE_LIMITED:
        return {}
    limit = _int(err.extra.get("limit"))
    retry_after = _int(err.extra.get("retry_after"))
    headers: dict[str, str] = {}
    if limit is not None:
        headers["RateLimit-Limit"] = str(limit)
        headers["RateLimit-Remaining"] = "0"
    if retry_after is not None:
        headers["RateLimit-Reset"] = str(retry_after)
        headers["Retry-After"] = str(retry_after)
    return headers
