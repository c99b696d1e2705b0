"""What the MCP tools do with runs: start one, follow it with progress, answer a review.

Everything goes through the gateway's gRPC stubs, as the REST routes do: CreateRun (the
same batched call, idempotency record and rate limit), WatchRun (the SSE route's
stream, here for progress), GetRun and SubmitInput. A run is followed until it is
terminal or waits for review, or for `wait` seconds; then its snapshot is answered.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import grpc

from gateway.http import dumps
from gateway.mcp.context import McpCaller
from gateway.routes.runs import caller
from weft.idempotency.v1 import idempotency_pb2
from weft.runs.v1 import runs_pb2
from weftcore.canonical import json_body_hash
from weftcore.errors import InvalidArgument
from weftcore.events import RUN_AWAITING_INPUT, RUN_CREATED, TERMINAL_EVENTS, TERMINAL_STATUSES

# Reports one step of a run's progress ("stage.completed summarize").
Progress = Callable[[str], Awaitable[None]]
_OPTIONS = ("webhook_url", "attachment_ids", "idempotency_key", "wait_seconds")
_SETTLED = TERMINAL_STATUSES | {"awaiting_input"}


def _string(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string.", param=name)
    return value or ""


def _ids(args: dict[str, Any]) -> list[str]:
    ids = args.get("attachment_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidArgument("attachment_ids must be a list of ids.", param="attachment_ids")
    return ids


def wait_seconds(args: dict[str, Any], default: int, most: int) -> int:
    value = args.get("wait_seconds", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise InvalidArgument(
            f"wait_seconds must be an integer from 0 to {most}.", param="wait_seconds"
        )
    return value


def _key(args: dict[str, Any]) -> str:
    key = _string(args, "idempotency_key")
    if key and (len(key) > 256 or not all(" " <= c <= "~" for c in key)):
        raise InvalidArgument(
            "idempotency_key must be 1 to 256 printable characters.", param="idempotency_key"
        )
    return key


async def start_run(
    who: McpCaller, tool: str, workflow: runs_pb2.Workflow, args: dict[str, Any]
) -> runs_pb2.CreatedRun:
    """CreateRun from a tool's flat arguments (a declared field wins over an option of
    the same name); a replayed idempotency key answers the first run."""
    fields: list[dict[str, Any]] = json.loads(workflow.fields_json or "[]")
    declared = {f["name"] for f in fields}
    for name in args:
        if name not in declared and name not in _OPTIONS and name != "input_text":
            raise InvalidArgument(
                f"Unknown field {name!r}: the workflow declares no such field.", param=name
            )
    options = {k: v for k, v in args.items() if k not in declared}
    key = _key(options)
    body = {k: v for k, v in args.items() if k != "wait_seconds" or k in declared}
    create = runs_pb2.CreateRunRequest(
        caller=caller(who.principal),
        workflow_id=workflow.id,
        input_text=_string(args, "input_text"),
        params_json=dumps({k: v for k, v in args.items() if k in declared}),
        attachment_ids=_ids(options),
        webhook_url=_string(options, "webhook_url"),
        idempotency=idempotency_pb2.Idempotency(
            key=key,
            method="POST",
            path=f"/mcp/tools/{tool}",
            request_hash=json_body_hash(body) if key else "",
        ),
        request_id=who.request_id,
    )
    reply: runs_pb2.CreateRunResponse
    if create.attachment_ids:  # reading attachments takes a while: not in a batch
        reply = await who.services.runs.CreateRun(create, timeout=30)
    else:
        reply = await who.services.create_run.call(create)
    return reply.run


async def get_run(who: McpCaller, run_id: str, wait: int = 0) -> runs_pb2.Run:
    return await who.services.runs.GetRun(
        runs_pb2.GetRunRequest(caller=caller(who.principal), run_id=run_id, wait_seconds=wait),
        timeout=wait + 10,
    )


async def submit_input(who: McpCaller, run_id: str, values: Any) -> runs_pb2.Run:
    if not isinstance(values, dict):
        raise InvalidArgument("values must be an object of the requested fields.", param="values")
    return await who.services.runs.SubmitInput(
        runs_pb2.SubmitInputRequest(
            caller=caller(who.principal), run_id=run_id, values_json=dumps(values)
        ),
        timeout=10,
    )


async def _watch(who: McpCaller, run_id: str, progress: Progress) -> runs_pb2.Run | None:
    """The run once it settles, reporting each event; None if the stream ended early."""
    call = who.services.runs.WatchRun(
        runs_pb2.WatchRunRequest(caller=caller(who.principal), run_id=run_id, after_seq=0)
    )
    try:
        async for event in call:
            if event.type != RUN_CREATED:  # reported already, with the run's id
                await progress(f"{event.type} {event.stage}".strip())
            if event.type in TERMINAL_EVENTS:
                return event.run
            if event.type == RUN_AWAITING_INPUT:
                # A replayed request may have been answered since: is it still waiting?
                now = await get_run(who, run_id)
                if now.status == "awaiting_input":
                    return now
    except grpc.RpcError:
        return None  # e.g. too many open streams: the caller polls instead
    finally:
        call.cancel()
    return None


async def follow(
    who: McpCaller, run_id: str, wait: int, progress: Progress, now: runs_pb2.Run | None = None
) -> runs_pb2.Run:
    """The run once terminal or awaiting input, or as it is after `wait` seconds.

    `now`: the run as just read (GetRun, SubmitInput); CreateRun answers no snapshot."""
    if now is not None and (now.status in _SETTLED or wait <= 0):
        return now
    if wait <= 0:
        return await get_run(who, run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with anyio.move_on_after(wait):
        settled = await _watch(who, run_id, progress)
        if settled is not None:
            return settled
    while (left := int(deadline - loop.time())) > 0:  # the stream failed: long-poll
        try:
            run = await get_run(who, run_id, min(left, 60))
        except grpc.RpcError:
            break  # e.g. too many open waits: the run exists, so answer it as it is
        if run.status in _SETTLED:
            return run
    return await get_run(who, run_id)


def outcome(who: McpCaller, run: runs_pb2.Run) -> dict[str, Any]:
    """What a tool answers about a run: its public snapshot and what to do next."""
    data: dict[str, Any] = json.loads(run.snapshot_json)
    base = who.base_url.rstrip("/")
    out: dict[str, Any] = {
        "run_id": run.id,
        "workflow_id": run.workflow_id,
        "status": data.get("status", run.status),
        "result": data.get("result"),
        "error": data.get("error"),
        "cost_cents": data.get("cost_cents"),
        "cost_breakdown": data.get("cost_breakdown") or [],
        "human_input_request": data.get("human_input_request"),
        "links": {
            "self": f"{base}/api/v1/workflow-runs/{run.id}",
            "app": f"{base}/app/workflows/{run.workflow_id}/runs/{run.id}",
        },
    }
    status = out["status"]
    if status == "awaiting_input":
        out["next"] = "The run waits for review: call submit_input with run_id and values."
    elif status not in TERMINAL_STATUSES:
        out["next"] = "The run continues: call get_run with run_id for its result."
    return out
