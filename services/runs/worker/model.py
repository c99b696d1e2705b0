"""The worker's view of a run and of a stage's outcome (no I/O here)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.runs.domain.transitions import RunState, StageRef, StageResult

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
OUTPUT_INVALID = "OUTPUT_INVALID"  # the result breaks the workflow's output_schema


@dataclass
class RunRecord:
    """A run as the worker executes it: its state (as last written), its definition,
    and the outputs of its finished stages (which feed the later ones)."""

    state: RunState
    definition: dict[str, Any]
    loaded_at: datetime  # the database's clock when the run was read
    completed: dict[str, Any] = field(default_factory=dict)  # stage id -> output

    @classmethod
    def of(cls, state: RunState, definition: dict[str, Any], loaded_at: datetime) -> "RunRecord":
        completed = {k: s.output for k, s in state.stages.items() if s.status == "completed"}
        return cls(state, definition, loaded_at, completed)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def workflow_id(self) -> str:
        return self.state.workflow_id

    @property
    def user_id(self) -> str:
        return self.state.user_id

    @property
    def input_text(self) -> str:
        return self.state.input_text

    @property
    def params(self) -> dict[str, Any]:
        return self.state.params

    @property
    def attachment_ids(self) -> list[str]:
        return self.state.attachment_ids

    @property
    def human_inputs(self) -> dict[str, Any]:
        return self.state.human_inputs

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.definition.get("stages") or [])

    def stage(self, index: int) -> StageRef:
        """The definition's stage `index`, as transitions name it."""
        stage = self.stages[index]
        return StageRef(index, str(stage["id"]), str(stage["type"]))


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


class NoSlot(Exception):
    """The run cannot start now: a concurrency limit of its workflow or account has no
    slot free (the write that would have started it wrote nothing)."""
