"""Run lifecycle events as published on JetStream (`weft.runs.<run_id>.<type>`).

One schema for every consumer: billing captures on terminal events, the gateway streams
them as SSE, the runs service delivers them to webhooks.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any

RUN_CREATED = "run.created"
RUN_STARTED = "run.started"
STAGE_STARTED = "stage.started"
STAGE_COMPLETED = "stage.completed"
# A piece of an LLM stage's answer as it streams (SSE only: JetStream, never Postgres).
STAGE_DELTA = "stage.delta"
RUN_AWAITING_INPUT = "run.awaiting_input"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_CANCELED = "run.canceled"

TERMINAL_EVENTS = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELED})
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})
# The events POSTed to a run's webhook_url.
WEBHOOK_EVENTS = TERMINAL_EVENTS | {RUN_AWAITING_INPUT}
# The events billing acts on, for runs that hold a reservation (weftcore.nats.BILLING_STREAM).
BILLING_EVENTS = TERMINAL_EVENTS | {RUN_CREATED}


@dataclass(frozen=True)
class RunEvent:
    id: str  # `evt_...`, stable across redeliveries: the dedupe key everywhere
    type: str
    run_id: str
    seq: int  # per-run order, starting at 1
    created_at: str
    # The run as GET /api/v1/workflow-runs/:id shows it (its `data`), at this moment.
    # Its `cost_breakdown` lists stage, model, input_tokens, output_tokens, cost_cents.
    run: dict[str, Any]
    stage: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "RunEvent":
        data = json.loads(raw)
        return cls(**data)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS
