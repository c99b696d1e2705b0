"""Opaque, prefixed, time-ordered ids (`run_01JD...`) and timestamp helpers.

Ids sort by creation time (48-bit milliseconds first), so "newest first" pagination can
use the id as cursor without a second index.
"""

import functools
import os
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

PREFIXES = ("wf", "run", "att", "key", "usr", "team", "req", "evt", "whd", "led")


# Every pair of characters, indexed by the 10 bits they encode.
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def encode_id(millis: int, rand: int) -> str:
    """The 26 characters of an id: 50 bits of milliseconds, then 80 random bits.

    Hot (every run makes several ids): 13 lookups of two characters each, twice as fast
    as base64.b32encode, which is pure Python in 3.11."""
    value = (millis & (1 << 50) - 1) << 80 | rand & (1 << 80) - 1
    return "".join([_PAIRS[value >> shift & 1023] for shift in _PAIR_SHIFTS])


def new_id(prefix: str) -> str:
    """A new id like `run_01jd3m...`: 10 chars of milliseconds + 16 chars of randomness."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{encode_id(millis, int.from_bytes(os.urandom(10), 'big'))}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) > len(prefix) + 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str:
    """RFC 3339 with milliseconds and a Z, or "" for None (proto3 has no null strings)."""
    if ts is None:
        return ""
    return _iso(ts)


def rfc3339(ts: datetime) -> str:
    """`ts` as RFC 3339 in UTC with milliseconds and a Z (`2026-12-07T18:57:19.234Z`)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Cached for `iso`: a run's few timestamps appear in every snapshot of every event it has.
# (Not for log lines: each of their times is new, and would only evict these.)
_iso = functools.lru_cache(maxsize=4096)(rfc3339)
