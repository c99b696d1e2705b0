"""Domain rows <-> protobuf messages of the runs service."""

import json
from typing import TYPE_CHECKING, Any

import asyncpg

from services.runs.domain.authoring import is_catalog
from services.runs.domain.concurrency import DEFAULT_PRIORITY
from services.runs.domain.create import (
    Caller,
    CreateRunInput,
    CreateRunOutput,
    IdempotencyRequest,
    Rerun,
)
from services.runs.domain.endpoint import Endpoint, describe
from services.runs.domain.token_feed import TokenDelta
from services.runs.domain.workflows import public_fields, public_stages
from weft.idempotency.v1 import idempotency_pb2
from weft.runs.v1 import runs_pb2 as pb
from weftcore.errors import InvalidArgument
from weftcore.events import STAGE_DELTA
from weftcore.ids import iso

if TYPE_CHECKING:
    from services.runs.domain.service import RunView


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_arg(raw: str, param: str, default: Any) -> Any:
    """A JSON-encoded request field (`default` when empty); 400 naming `param` if bad."""
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"{param} is not valid JSON.", param=param) from None


def caller(msg: pb.Caller) -> Caller:
    if not msg.user_id:
        raise InvalidArgument("caller.user_id is required.", param="caller.user_id")
    return Caller(
        user_id=msg.user_id,
        team_id=msg.team_id,
        plan=msg.plan,
        allowlist=tuple(msg.workflow_allowlist) if msg.has_allowlist else None,
        version_pins=dict(msg.version_pins),
        client_ip=msg.client_ip,
        team_role=msg.team_role,
    )


def to_caller_msg(c: Caller) -> pb.Caller:
    return pb.Caller(
        user_id=c.user_id,
        team_id=c.team_id,
        plan=c.plan,
        has_allowlist=c.allowlist is not None,
        workflow_allowlist=list(c.allowlist or ()),
        version_pins=dict(c.version_pins),
        client_ip=c.client_ip,
        team_role=c.team_role,
    )


def endpoint(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        workflow_id=e.workflow_id,
        slug=e.slug,
        auth=e.settings.auth,
        payer_user_id=e.payer_user_id,
        payer_team_id=e.payer_team_id,
        cors_origins=list(e.settings.cors_origins),
    )


def workflow(row: asyncpg.Record, changed: bool = False) -> pb.Workflow:
    # Its latest version's trigger; before the first publish, the draft's.
    definition = row["definition"] if row["definition"] is not None else row["draft"]
    return pb.Workflow(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        version=row["current_version"],
        updated_at=iso(row["updated_at"]),
        created_at=iso(row["created_at"]),
        fields_json=_dumps(public_fields(definition)),
        stages_json=_dumps(public_stages(definition)),
        definition_json=_dumps(definition),
        changed=changed,
        owner_user_id=row["owner_user_id"] or "",
        owner_team_id=row["owner_team_id"] or "",
        draft_json=_dumps(row["draft"]) if row["draft"] is not None else "",
        draft_revision=row["draft_revision"],
        draft_updated_at=iso(row["draft_updated_at"]),
        archived_at=iso(row["archived_at"]),
        endpoint_json=_dumps(describe(definition, payable=not is_catalog(row))),
    )


def workflow_version(row: asyncpg.Record) -> pb.WorkflowVersion:
    return pb.WorkflowVersion(
        workflow_id=row["workflow_id"],
        version=row["version"],
        definition_json=_dumps(row["definition"]),
        published_by=row["published_by"] or "",
        note=row["note"],
        created_at=iso(row["created_at"]),
    )


def run(view: "RunView") -> pb.Run:
    row = view.row
    snap = view.snapshot()
    return pb.Run(
        id=row["id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        user_id=row["user_id"],
        status=row["status"],
        cost_micros=row["cost_micros"],
        created_at=iso(row["created_at"]),
        started_at=iso(row["started_at"]),
        completed_at=iso(row["completed_at"]),
        snapshot_json=_dumps(snap),
    )


def idempotency(msg: idempotency_pb2.Idempotency) -> IdempotencyRequest | None:
    if not msg.key:
        return None
    return IdempotencyRequest(msg.key, msg.method, msg.path, msg.request_hash)


def create_run_input(request: pb.CreateRunRequest) -> CreateRunInput:
    return CreateRunInput(
        workflow_id=request.workflow_id,
        input_text=request.input_text,
        params=json_arg(request.params_json, "params", {}),
        attachment_ids=list(request.attachment_ids),
        webhook_url=request.webhook_url,
        idempotency=idempotency(request.idempotency),
        version=request.version,
        rerun=Rerun(
            request.rerun_of, request.from_stage, request.has_input_text, request.has_params
        )
        if request.rerun_of
        else None,
        timeout_seconds=request.timeout_seconds if request.HasField("timeout_seconds") else None,
        priority=request.priority if request.HasField("priority") else DEFAULT_PRIORITY,
    )


def create_run_response(out: CreateRunOutput) -> pb.CreateRunResponse:
    created = out.run
    response = pb.CreateRunResponse(
        run=pb.CreatedRun(
            id=created.id,
            workflow_id=created.workflow_id,
            status=created.status,
            created_at=created.created_at,
        ),
        replayed=out.replayed,
    )
    if out.rate_limit is not None:
        response.rate_limit.CopyFrom(
            pb.RateLimitState(
                limit=out.rate_limit.limit,
                remaining=out.rate_limit.remaining,
                reset_seconds=out.rate_limit.reset_seconds,
            )
        )
    return response


def run_event(row: asyncpg.Record) -> pb.RunEvent:
    """A run_events row as the proto (the run as it was at that event)."""
    payload = row["payload"]
    snapshot = payload["run"]
    return pb.RunEvent(
        id=row["event_id"],
        seq=row["seq"],
        type=row["type"],
        stage=row["stage"] or "",
        created_at=payload["created_at"],
        run=pb.Run(
            id=snapshot["id"],
            workflow_id=snapshot["workflow_id"],
            status=snapshot["status"],
            snapshot_json=_dumps(snapshot),
        ),
    )


def token_event(delta: TokenDelta) -> pb.RunEvent:
    """A streamed piece of a stage's answer (`stage.delta`): no snapshot, no id."""
    return pb.RunEvent(
        seq=delta.seq,
        type=STAGE_DELTA,
        stage=delta.stage,
        delta=delta.text,
        delta_index=delta.n,
    )


def webhook_delivery(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=row["id"],
        run_id=row["run_id"],
        event_type=row["event_type"],
        url=row["url"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        next_attempt_at=iso(row["next_attempt_at"]) if row["status"] == "pending" else "",
        created_at=iso(row["created_at"]),
        delivered_at=iso(row["delivered_at"]),
        attempt_log=[
            pb.WebhookAttempt(
                attempt=a["attempt"],
                status_code=a["status_code"],
                error=a["error"],
                duration_ms=a["duration_ms"],
                created_at=iso(a["created_at"]),
            )
            for a in attempts
        ],
    )
