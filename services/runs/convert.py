"""Domain rows <-> protobuf messages of the runs service."""

import json
from typing import TYPE_CHECKING, Any

import asyncpg

from services.runs.create import Caller
from services.runs.workflows import public_fields, public_stages
from weft.runs.v1 import runs_pb2 as pb
from weftcore.errors import InvalidArgument
from weftcore.ids import iso

if TYPE_CHECKING:
    from services.runs.service import RunView


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def caller(msg: pb.Caller) -> Caller:
    if not msg.user_id:
        raise InvalidArgument("caller.user_id is required.", param="caller.user_id")
    return Caller(
        user_id=msg.user_id,
        team_id=msg.team_id,
        plan=msg.plan,
        allowlist=tuple(msg.workflow_allowlist) if msg.has_allowlist else None,
    )


def to_caller_msg(c: Caller) -> pb.Caller:
    return pb.Caller(
        user_id=c.user_id,
        team_id=c.team_id,
        plan=c.plan,
        has_allowlist=c.allowlist is not None,
        workflow_allowlist=list(c.allowlist or ()),
    )


def workflow(row: asyncpg.Record, changed: bool = False) -> pb.Workflow:
    definition = row["definition"]
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
        result_json=_dumps(row["result"]),
        error_json=_dumps(row["error"]),
        cost_micros=row["cost_micros"],
        cost_breakdown_json=_dumps(snap["cost_breakdown"]),
        human_input_request_json=_dumps(row["human_input_request"]),
        created_at=iso(row["created_at"]),
        started_at=iso(row["started_at"]),
        completed_at=iso(row["completed_at"]),
        input_text=row["input_text"],
        params_json=_dumps(row["params"]),
        attachment_ids=list(row["attachment_ids"]),
        snapshot_json=_dumps(snap),
    )
