"""Reading runs for the pages: the public run object, its events and deliveries."""

import asyncio
import json
from typing import Any

from aiohttp import web

from console.formats import TERMINAL
from gateway.keys import SERVICES
from gateway.routes.runs import caller
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.errors import NotFound

# A live run's event log: what arrives within this long is shown (the page refreshes).
LIVE_EVENTS_WAIT_SECONDS = 0.05
MAX_EVENTS = 500


async def get_run(
    request: web.Request, principal: auth_pb2.Principal, workflow_id: str, run_id: str
) -> dict[str, Any]:
    """The run as the API shows it; 404 unless it is the caller's and of that workflow."""
    run = await request.config_dict[SERVICES].runs.GetRun(
        runs_pb2.GetRunRequest(caller=caller(principal), run_id=run_id), timeout=10
    )
    if run.workflow_id != workflow_id:
        raise NotFound(f"No run {run_id}.")
    data: dict[str, Any] = json.loads(run.snapshot_json)
    data["workflow_version"] = run.workflow_version
    return data


async def run_events_so_far(
    request: web.Request, principal: auth_pb2.Principal, run_id: str, status: str
) -> list[runs_pb2.RunEvent]:
    """The run's lifecycle events so far (a finished run's stream ends by itself)."""
    call = request.config_dict[SERVICES].runs.WatchRun(
        runs_pb2.WatchRunRequest(caller=caller(principal), run_id=run_id, after_seq=0)
    )
    events: list[runs_pb2.RunEvent] = []
    wait = None if status in TERMINAL else LIVE_EVENTS_WAIT_SECONDS
    try:
        iterator = call.__aiter__()
        while len(events) < MAX_EVENTS:
            try:
                events.append(await asyncio.wait_for(iterator.__anext__(), wait))
            except (StopAsyncIteration, TimeoutError):
                break
    finally:
        call.cancel()
    return events


async def deliveries(request: web.Request, run_id: str) -> list[runs_pb2.WebhookDelivery]:
    """Webhook deliveries of a run (call only after get_run proved it is the caller's)."""
    reply = await request.config_dict[SERVICES].runs.ListWebhookDeliveries(
        runs_pb2.ListWebhookDeliveriesRequest(run_id=run_id), timeout=10
    )
    return list(reply.deliveries)


async def list_runs(
    request: web.Request,
    principal: auth_pb2.Principal,
    workflow_id: str,
    status: str,
    starting_after: str,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], bool]:
    reply = await request.config_dict[SERVICES].runs.ListRuns(
        runs_pb2.ListRunsRequest(
            caller=caller(principal),
            workflow_id=workflow_id,
            status=status,
            limit=limit,
            starting_after=starting_after,
        ),
        timeout=10,
    )
    return [json.loads(r.snapshot_json) for r in reply.runs], reply.has_more
