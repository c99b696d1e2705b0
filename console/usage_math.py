"""Usage figures from ledger entries and runs: open reservations, cost per day and per
workflow, and the bars of a small server-rendered SVG chart (pure, unit-tested)."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from weft.billing.v1 import billing_pb2


def open_reservations(entries: Iterable[billing_pb2.LedgerEntry]) -> list[billing_pb2.LedgerEntry]:
    """Reserve entries whose run has no capture or release among `entries`."""
    items = list(entries)
    settled = {e.run_id for e in items if e.kind in ("capture", "release")}
    return [e for e in items if e.kind == "reserve" and e.run_id not in settled]


def cost_per_day(entries: Iterable[billing_pb2.LedgerEntry]) -> list[tuple[str, int]]:
    """Captured micros per UTC day (oldest first)."""
    days: dict[str, int] = defaultdict(int)
    for e in entries:
        if e.kind == "capture":
            days[e.created_at[:10]] += abs(e.amount_micros)
    return sorted(days.items())


def cost_per_workflow(runs: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """Cents per workflow over the given runs (largest first)."""
    totals: dict[str, int] = defaultdict(int)
    for run in runs:
        totals[run["workflow_id"]] += int(run.get("cost_cents") or 0)
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: int
    y: int
    width: int
    height: int


def bars(series: Sequence[tuple[str, int]], width: int = 600, height: int = 160) -> list[Bar]:
    """Bar geometry for an SVG of `width` x `height` (the labels go below it)."""
    if not series:
        return []
    top = max(v for _, v in series) or 1
    slot = width // len(series)
    bar_width = max(2, int(slot * 0.7))
    out = []
    for i, (label, value) in enumerate(series):
        h = round(height * value / top)
        out.append(Bar(label, value, i * slot + (slot - bar_width) // 2, height - h, bar_width, h))
    return out
