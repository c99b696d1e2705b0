"""What templates see (see workflow.schema.json), and the services stages may use."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from services.runs.domain.ssrf import SSRFPolicy
from services.runs.worker.llm_client import ChatResult, OnDelta
from services.runs.worker.model import RunRecord


@dataclass(frozen=True)
class AttachmentText:
    id: str
    filename: str
    kind: str
    text: str
    truncated: bool


class Chat(Protocol):
    async def chat(
        self,
        model_id: str,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_mode: bool = False,
        on_delta: OnDelta | None = None,
    ) -> ChatResult: ...

    def context_tokens(self, model_id: str) -> int: ...


class Pricer(Protocol):
    async def price(
        self, stage_id: str, model: str, input_tokens: int, output_tokens: int
    ) -> int: ...


TextReader = Callable[[str, list[str]], Awaitable[list[AttachmentText]]]


@dataclass(frozen=True)
class Delta:
    """A piece of an LLM stage's answer as it streams: the `n`th (from 1) of the stage
    that the run's event `seq` (its stage.started, usually) announced."""

    run_id: str
    seq: int
    n: int
    stage: str
    text: str


class DeltaSink(Protocol):
    """Where streamed tokens go (services.runs.worker.deltas: a JetStream subject per
    run, not Postgres); it must not fail the run when it cannot deliver."""

    async def publish(self, delta: Delta) -> None: ...


class NoDeltas:
    """A sink that drops everything (unit tests, tools without NATS)."""

    async def publish(self, delta: Delta) -> None:
        return None


@dataclass
class Services:
    """Everything stages reach outside the worker through (fakes in unit tests)."""

    llm: Chat
    pricer: Pricer
    read_text: TextReader
    ssrf: SSRFPolicy = field(default_factory=SSRFPolicy)
    http: aiohttp.ClientSession | None = None
    deltas: DeltaSink = field(default_factory=NoDeltas)


class _StageText(str):
    """A text output that also answers `.output`, so `stages.x` and `stages.x.output`
    both render it (the schema documents the first; older prompts use the second)."""

    @property
    def output(self) -> str:
        return str(self)


class _StageDict(dict[str, Any]):
    @property
    def output(self) -> dict[str, Any]:
        return dict(self)


class _StageList(list[Any]):
    @property
    def output(self) -> list[Any]:
        return list(self)


def _stage_value(value: Any) -> Any:
    if isinstance(value, str):
        return _StageText(value)
    if isinstance(value, dict):
        return _StageDict(value)
    if isinstance(value, list):
        return _StageList(value)
    return value


def params_with_defaults(run: RunRecord) -> dict[str, Any]:
    params = dict(run.params)
    for spec in run.definition.get("fields") or []:
        if spec.get("name") not in params and "default" in spec:
            params[spec["name"]] = spec["default"]
    return params


def join_attachments(attachments: list[AttachmentText]) -> str:
    parts = [f"--- {a.filename} ({a.kind}) ---\n{a.text}" for a in attachments]
    return "\n\n".join(parts)


def attachment_variables(attachments: list[AttachmentText]) -> dict[str, Any]:
    """`attachments` (one object each) and `attachments_text` (all joined) for templates."""
    return {
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "kind": a.kind,
                "text": a.text,
                "truncated": a.truncated,
            }
            for a in attachments
        ],
        "attachments_text": join_attachments(attachments),
    }


def template_context(
    run: RunRecord, attachments: list[AttachmentText] | None = None
) -> dict[str, Any]:
    """The variables every template of the run renders with, at this point of the run."""
    return {
        "input_text": run.input_text,
        "params": params_with_defaults(run),
        **attachment_variables(attachments or []),
        "stages": {sid: _stage_value(out) for sid, out in run.completed.items()},
        "run": {"id": run.id, "workflow_id": run.workflow_id},
    }


def truncate_attachments(attachments: list[AttachmentText], max_chars: int) -> list[AttachmentText]:
    """Fit all attachments' text into `max_chars`, shared evenly, noting each cut."""
    if not attachments:
        return []
    total = sum(len(a.text) for a in attachments)
    if total <= max_chars:
        return attachments
    share = max(0, max_chars // len(attachments))
    fitted = []
    for a in attachments:
        if len(a.text) <= share:
            fitted.append(a)
            continue
        note = (
            f"\n[... truncated: {a.filename} has {len(a.text)} characters; only the first "
            f"{share} fit in the model's context ...]"
        )
        fitted.append(
            AttachmentText(a.id, a.filename, a.kind, a.text[:share] + note, truncated=True)
        )
    return fitted
