"""Opaque, prefixed, time-ordered ids (`run_01JD...`) and timestamp helpers.

Ids sort by creation time (48-bit milliseconds first), so "newest first" pagination can
use the id as cursor without a second index.
"""

import base64
import functools
import os
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

PREFIXES = ("wf", "run", "att", "key", "usr", "team", "req", "evt", "whd", "led")


_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def encode_id(millis: int, rand: int) -> str:
    """The 26 characters of an id: 50 bits of milliseconds, then 80 random bits.

    Hot (every run makes several ids), so the C base32 encoder does the work: the 130
    bits, left-aligned in 20 bytes, are its first 26 characters."""
    value = ((millis & (1 << 50) - 1) << 80 | rand & (1 << 80) - 1) << 30
    return base64.b32encode(value.to_bytes(20, "big"))[:26].translate(_FROM_RFC4648).decode()


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


@functools.lru_cache(maxsize=4096)
def _iso(ts: datetime) -> str:
    # Cached: a run's few timestamps appear in every snapshot of every event it has.
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
