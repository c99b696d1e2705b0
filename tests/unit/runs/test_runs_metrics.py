"""services.runs.metrics: what the outbox relay's published rows count."""

import json
from typing import Any

from prometheus_client import REGISTRY

from services.runs.metrics import observe_event, observe_published, webhook_outcome
from weftcore.events import RunEvent
from weftcore.nats import billing_subject, event_subject


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def payload(event_type: str, run: dict[str, Any]) -> bytes:
    return RunEvent("evt_1", event_type, "run_1", 1, "2026-01-01T00:00:00Z", run).to_json()


def test_creations_are_counted_once_per_event_and_only_from_the_events_stream() -> None:
    before = sample("weft_runs_created_total")
    observe_event(event_subject("run_1", "run.created"), payload("run.created", {}))
    observe_event(billing_subject("run_1", "run.created"), payload("run.created", {}))
    observe_event("weft.jobs.run", b'{"run_id": "run_1"}')
    observe_event(event_subject("run_1", "stage.started"), payload("stage.started", {}))
    assert sample("weft_runs_created_total") == before + 1


def test_a_terminal_event_counts_the_run_its_duration_and_its_stages() -> None:
    run = {
        "status": "failed",
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:04.500Z",
        "cost_breakdown": [
            {"stage": "a", "type": "llm", "duration_ms": 1500},
            {"stage": "b", "type": "http", "duration_ms": 20},
        ],
    }
    finished = sample("weft_runs_finished_total", status="failed")
    seconds = sample("weft_run_duration_seconds_sum", status="failed")
    llm = sample("weft_stage_duration_seconds_sum", stage_type="llm")
    http = sample("weft_stage_duration_seconds_count", stage_type="http")
    rows = [
        {"subject": event_subject("run_1", "run.failed"), "payload": payload("run.failed", run)}
    ]
    observe_published(rows)
    assert sample("weft_runs_finished_total", status="failed") == finished + 1
    assert sample("weft_run_duration_seconds_sum", status="failed") == seconds + 4.5
    assert sample("weft_stage_duration_seconds_sum", stage_type="llm") == llm + 1.5
    assert sample("weft_stage_duration_seconds_count", stage_type="http") == http + 1


def test_an_unreadable_terminal_event_is_not_counted() -> None:
    before = sample("weft_runs_finished_total", status="completed")
    observe_event(event_subject("run_1", "run.completed"), b"not json")
    observe_event(event_subject("run_1", "run.completed"), json.dumps({"x": 1}).encode())
    assert sample("weft_runs_finished_total", status="completed") == before


def test_webhook_outcomes() -> None:
    assert webhook_outcome(204, False) == "delivered"
    assert webhook_outcome(500, False) == "http_error"
    assert webhook_outcome(0, False) == "unreachable"
    assert webhook_outcome(0, True) == "refused"
