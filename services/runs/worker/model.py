"""The worker's view of a run and of a stage's outcome (no I/O here)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Public `error.code`s of failed runs (the stage that failed is in `error.stage`).
TEMPLATE_ERROR = "TEMPLATE_ERROR"
LLM_ERROR = "LLM_ERROR"
LLM_INVALID_OUTPUT = "LLM_INVALID_OUTPUT"
HTTP_ERROR = "HTTP_ERROR"
HTTP_INVALID_REQUEST = "HTTP_INVALID_REQUEST"  # the rendered request cannot be sent
SSRF_REFUSED = "SSRF_REFUSED"
ATTACHMENT_ERROR = "ATTACHMENT_ERROR"
BILLING_ERROR = "BILLING_ERROR"
INTERNAL = "INTERNAL"  # a stage crashed unexpectedly (logged with the run id)


@dataclass
class RunRecord:
    """A run as the worker executes it: its inputs, definition and finished stages."""

    id: str
    workflow_id: str
    user_id: str
    status: str
    input_text: str
    params: dict[str, Any]
    attachment_ids: list[str]
    human_inputs: dict[str, Any]
    definition: dict[str, Any]
    # stage id -> output, for stages whose result is persisted as completed
    completed: dict[str, Any] = field(default_factory=dict)
    # stages claimed (status running) by an attempt that never finished
    started: set[str] = field(default_factory=set)
    first_start: bool = False

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.definition.get("stages") or [])

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        definition: dict[str, Any],
        stage_rows: Iterable[Mapping[str, Any]] = (),
        *,
        first_start: bool,
    ) -> "RunRecord":
        """The run to execute, from its `runs` row and its `stage_results` rows."""
        rows = list(stage_rows)
        return cls(
            id=row["id"],
            workflow_id=row["workflow_id"],
            user_id=row["user_id"],
            status="running",
            input_text=row["input_text"] or "",
            params=dict(row["params"] or {}),
            attachment_ids=list(row["attachment_ids"] or []),
            human_inputs=dict(row["human_inputs"] or {}),
            definition=definition,
            completed={s["stage_id"]: s["output"] for s in rows if s["status"] == "completed"},
            started={s["stage_id"] for s in rows if s["status"] == "running"},
            first_start=first_start,
        )


@dataclass(frozen=True)
class StageResult:
    """What a finished stage persists: its output and what it cost."""

    output: Any
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    duration_ms: int = 0


@dataclass(frozen=True)
class PurePlan:
    """A run made only of pure stages, computed before anything is written: each stage's
    result (in stage order) and the run's result."""

    stages: list[StageResult]
    result: Any


@dataclass(frozen=True)
class AwaitInput:
    """A human_review stage with no answer yet: pause the run with this request."""

    request: dict[str, Any]


class StageError(Exception):
    """A stage failed for a reason the user should see; the run fails with it.

    `usage` keeps the tokens an LLM call consumed before the failure (e.g. an answer
    that did not match the schema): the provider charged them, so the run does too.
    """

    def __init__(self, code: str, message: str, usage: StageResult | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage


class TransientError(Exception):
    """A dependency (billing, storage, database) failed; retry the job later."""
