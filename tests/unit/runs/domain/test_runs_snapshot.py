"""The public run object built from rows: shape, cost rounding, breakdown order."""

from datetime import UTC, datetime
from typing import Any

import pytest

from services.runs.domain.snapshot import cents, run_snapshot

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("micros", "expected"), [(0, 0), (1, 1), (9_999, 1), (10_000, 1), (10_001, 2), (120_000, 12)]
)
def test_cents_round_up(micros: int, expected: int) -> None:
    assert cents(micros) == expected


def stage(index: int, sid: str, status: str = "completed", **kw: Any) -> dict[str, Any]:
    return {
        "stage_index": index,
        "stage_id": sid,
        "stage_type": kw.get("type", "llm"),
        "status": status,
        "model": kw.get("model"),
        "input_tokens": kw.get("input_tokens", 0),
        "output_tokens": kw.get("output_tokens", 0),
        "cost_micros": kw.get("cost_micros", 0),
        "duration_ms": kw.get("duration_ms", 0),
    }


def test_snapshot_has_exactly_the_public_shape() -> None:
    run = {
        "id": "run_1",
        "workflow_id": "wf_1",
        "workflow_version": 3,
        "rerun_of": None,
        "timeout_seconds": 300,
        "priority": 5,
        "status": "completed",
        "result": {"summary": "ok"},
        "error": None,
        "cost_micros": 120_001,
        "human_input_request": None,
        "created_at": T0,
        "started_at": T0,
        "completed_at": None,
        "input_text": "secret prompt",  # never part of the public object
    }
    stages = [
        stage(1, "fmt", type="template", duration_ms=3),
        stage(
            0,
            "summarize",
            model="local:m",
            input_tokens=812,
            output_tokens=143,
            cost_micros=115_000,
            duration_ms=950,
        ),
        stage(2, "later", status="running"),
    ]
    snap = run_snapshot(run, stages)
    assert snap == {
        "id": "run_1",
        "workflow_id": "wf_1",
        "version": 3,
        "rerun_of": None,
        "timeout_seconds": 300,
        "priority": 5,
        "queue_position": None,
        "status": "completed",
        "result": {"summary": "ok"},
        "error": None,
        "cost_cents": 13,
        "cost_breakdown": [
            {
                "stage": "summarize",
                "type": "llm",
                "model": "local:m",
                "input_tokens": 812,
                "output_tokens": 143,
                "cost_cents": 12,
                "duration_ms": 950,
            },
            {
                "stage": "fmt",
                "type": "template",
                "model": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_cents": 0,
                "duration_ms": 3,
            },
        ],
        "human_input_request": None,
        "created_at": "2026-01-02T03:04:05.678Z",
        "started_at": "2026-01-02T03:04:05.678Z",
        "completed_at": None,
    }
