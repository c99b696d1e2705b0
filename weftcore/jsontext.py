"""Compact JSON text for the hot paths (run events, API responses).

orjson encodes about ten times faster than the standard library. It refuses what JSON
parsed from users may still hold (integers beyond 64 bits, non-string keys); such a
document takes the standard library's path, which writes the same JSON.
"""

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """`value` as compact JSON text (no spaces; non-ASCII kept as UTF-8)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
