"""The public run object: `data` of GET /api/v1/workflow-runs/:id (without `links`).

Built in one place so the API, the events on JetStream and the webhooks all show the
same thing. Money: micros (1 USD = 1,000,000) -> cents rounded up, never a float.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from weftcore.ids import iso

MICROS_PER_CENT = 10_000


def cents(micros: int) -> int:
    """Whole cents, rounded up (a run that cost anything costs at least a cent)."""
    return -(-int(micros) // MICROS_PER_CENT)


def _ts(value: datetime | None) -> str | None:
    return iso(value) or None


def version_label(version: int) -> int | str:
    """A run's `version`: the published version it runs, or "draft" (a pinned draft)."""
    return version if version > 0 else "draft"


def stage_cost(row: Mapping[str, Any]) -> dict[str, Any]:
    """One `cost_breakdown` entry from a stage_results row."""
    return {
        "stage": row["stage_id"],
        "type": row["stage_type"],
        "model": row["model"],
        "input_tokens": int(row["input_tokens"] or 0),
        "output_tokens": int(row["output_tokens"] or 0),
        "cost_cents": cents(row["cost_micros"] or 0),
        "duration_ms": int(row["duration_ms"] or 0),
    }


def run_snapshot(
    run_row: Mapping[str, Any],
    stage_rows: Iterable[Mapping[str, Any]],
    queue_position: int | None = None,
) -> dict[str, Any]:
    """The run as clients see it, from a `runs` row and its `stage_results` rows;
    `queue_position`: its place among the runs waiting for a slot (store/repository.py
    reads it with the row; events leave it out: it changes without them)."""
    stages = sorted(stage_rows, key=lambda r: r["stage_index"])
    return {
        "id": run_row["id"],
        "workflow_id": run_row["workflow_id"],
        "version": version_label(run_row["workflow_version"]),
        "rerun_of": run_row["rerun_of"],
        "timeout_seconds": run_row["timeout_seconds"],
        "priority": run_row["priority"],
        "queue_position": queue_position,
        "status": run_row["status"],
        "result": run_row["result"],
        "error": run_row["error"],
        "cost_cents": cents(run_row["cost_micros"] or 0),
        "cost_breakdown": [stage_cost(r) for r in stages if r["status"] != "running"],
        "human_input_request": run_row["human_input_request"],
        "created_at": _ts(run_row["created_at"]),
        "started_at": _ts(run_row["started_at"]),
        "completed_at": _ts(run_row["completed_at"]),
    }
