"""Typed objects of the Weft API (pydantic v2). Unknown fields are kept (`extra="allow"`),
so a newer server never breaks an older SDK; `model_dump()` gives the JSON back."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict

TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


class WeftModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Me(WeftModel):
    user_id: str
    email: Optional[str] = None
    plan: Optional[str] = None
    team_id: Optional[str] = None
    team_role: Optional[str] = None  # admin | member | viewer
    key_id: Optional[str] = None
    key_name: Optional[str] = None
    key_scopes: List[str] = []
    workflow_allowlist: Optional[List[str]] = None


class Field(WeftModel):
    """A declared input of a workflow (or of a human-review request)."""

    name: str
    type: str
    required: bool = False
    description: Optional[str] = None
    default: Any = None
    constraints: Optional[Dict[str, Any]] = None

    @property
    def options(self) -> List[Any]:
        """The choices of a `select` field."""
        return list((self.constraints or {}).get("options") or [])


class Stage(WeftModel):
    id: str
    type: str
    model: Optional[str] = None


class WorkflowSummary(WeftModel):
    """An entry of GET /workflows."""

    id: str
    name: str
    slug: Optional[str] = None
    description: Optional[str] = None
    version: Optional[int] = None  # the latest published version; None before the first
    visibility: Optional[str] = None  # "private" or "catalog"
    owner: Optional[Dict[str, str]] = None  # {"type": "user"|"team", "id": ...}; None: catalog
    archived_at: Optional[str] = None
    updated_at: Optional[str] = None


class Workflow(WorkflowSummary):
    """GET /workflows/:id: the workflow with its trigger configuration."""

    fields: List[Field] = []
    stages: List[Stage] = []
    endpoint_url: Optional[str] = None
    created_at: Optional[str] = None
    links: Dict[str, str] = {}


class CodeSnippet(WeftModel):
    language: str
    variant: str
    code: str
    auth: Optional[str] = None  # "key", or "none" for a public endpoint's keyless call


class Attachment(WeftModel):
    id: str
    original_filename: Optional[str] = None
    kind: Optional[str] = None
    content_type: Optional[str] = None
    byte_size: Optional[int] = None
    sha256: Optional[str] = None
    extraction_status: Optional[str] = None
    extraction_error: Optional[str] = None
    row_count: Optional[int] = None
    truncated: Optional[bool] = None
    created_at: Optional[str] = None


class RunError(WeftModel):
    code: str
    message: str = ""
    stage: Optional[str] = None


class StageCost(WeftModel):
    stage: str
    type: Optional[str] = None
    model: Optional[str] = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_cents: int = 0
    duration_ms: int = 0


class HumanInputRequest(WeftModel):
    """What a run in `awaiting_input` asks for: answer with `runs.submit_input`."""

    stage: str
    prompt: Optional[str] = None
    fields: List[Field] = []
    context: Any = None


class Run(WeftModel):
    id: str
    workflow_id: Optional[str] = None
    version: Optional[Union[int, str]] = None  # the version it runs, or "draft"
    rerun_of: Optional[str] = None  # the run this one reruns
    timeout_seconds: Optional[int] = None  # its time limit from its start
    priority: Optional[int] = None  # 0-9: its turn among runs waiting for a slot
    queue_position: Optional[int] = None  # while waiting for a slot: its place (1: next)
    status: str
    result: Any = None
    error: Optional[RunError] = None
    cost_cents: Optional[int] = None
    cost_breakdown: List[StageCost] = []
    human_input_request: Optional[HumanInputRequest] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    links: Dict[str, str] = {}

    @property
    def done(self) -> bool:
        """True once the status is terminal (completed, failed or canceled)."""
        return self.status in TERMINAL_STATUSES


class RunEvent(WeftModel):
    """One Server-Sent Event of a run: `type` (`run.started`, `stage.completed`, ...),
    the `stage` it concerns, and `data`, the run snapshot at that moment. `seq` is the
    SSE id to resume after (`Last-Event-ID`)."""

    id: Optional[str] = None
    type: str
    created_at: Optional[str] = None
    stage: Optional[str] = None
    data: Optional[Run] = None
    seq: Optional[str] = None
    delta: Optional[str] = None

    @property
    def terminal(self) -> bool:
        return self.type in ("run.completed", "run.failed", "run.canceled")


class ErrorDetail(WeftModel):
    """The `error` object of the API's error envelope."""

    code: str
    message: str
    request_id: Optional[str] = None
    param: Optional[str] = None


class WebhookEvent(WeftModel):
    """The JSON body of a webhook delivery: `id` is stable across retries (deduplicate
    on it), `data` is the run snapshot."""

    id: str
    type: str
    created_at: Optional[str] = None
    data: Run
