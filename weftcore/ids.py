"""Opaque, prefixed, time-ordered ids (`run_01JD...`) and timestamp helpers.

Ids sort by creation time (48-bit milliseconds first), so "newest first" pagination can
use the id as cursor without a second index.
"""

import os
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

PREFIXES = ("wf", "run", "att", "key", "usr", "team", "req", "evt", "whd", "led")


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id like `run_01jd3m...`: 10 chars of milliseconds + 16 chars of randomness."""
    millis = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(millis, 10)}{_b32(rand, 16)}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) > len(prefix) + 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str:
    """RFC 3339 with milliseconds and a Z, or "" for None (proto3 has no null strings)."""
    if ts is None:
        return ""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
