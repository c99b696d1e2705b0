"""Wiring of the idempotency records and rate limits (services/runs/idempotency*.py,
ratelimit.py) into CreateRun and the Begin/CompleteIdempotent RPCs."""

from types import SimpleNamespace
from typing import Any

from services.runs import idempotency_rpc as _rpc
from services.runs.create import IdempotencyStore, RateLimiter
from services.runs.idempotency import PgIdempotencyStore
from services.runs.ratelimit import PgRateLimiter

idempotency_rpc: Any = SimpleNamespace(begin=_rpc.begin_rpc, complete=_rpc.complete_rpc)


def make_idempotency() -> IdempotencyStore:
    """CreateRun claims a key before anything else (a replay touches no billing), so no
    separate lock-free look is needed."""
    return PgIdempotencyStore()


def make_rate_limiter() -> RateLimiter:
    """Per-plan hourly limits read once from WEFT_RATE_LIMIT_<PLAN>."""
    return PgRateLimiter()
