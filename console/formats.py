"""Small pure formatting helpers for the templates (unit-tested)."""

import json
from typing import Any

TERMINAL = frozenset({"completed", "failed", "canceled"})


def cents(value: Any) -> str:
    """12 -> "$0.12"; None -> "-"."""
    if value is None:
        return "-"
    whole, rest = divmod(int(value), 100)
    return f"${whole:,}.{rest:02d}"


def usd_micros(value: Any) -> str:
    """Micro-dollars with 4 decimals: 1_234_500 -> "$1.2345" (negative kept)."""
    if value is None:
        return "-"
    micros = int(value)
    sign = "-" if micros < 0 else ""
    whole, rest = divmod(abs(micros), 1_000_000)
    return f"{sign}${whole:,}.{rest // 100:04d}"


def when(value: Any) -> str:
    """An RFC 3339 time as "2026-12-07 22:40:11 UTC"; empty -> "-"."""
    if not value:
        return "-"
    text = str(value)
    return text[:19].replace("T", " ") + " UTC" if len(text) >= 19 else text


def duration_ms(value: Any) -> str:
    if value is None:
        return "-"
    ms = int(value)
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
