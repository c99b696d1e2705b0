"""Runs: the filterable list (live status) and a run's page (the links.app URL)."""

from aiohttp import web

from console.field_values import form_values
from console.render import render
from console.runs_data import deliveries, get_run, list_runs, run_events_so_far
from console.session import person_form, require_person
from gateway.http import dumps
from gateway.keys import SERVICES
from gateway.routes.events import stream_run_events
from gateway.routes.runs import caller
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument

LIVE = ("pending", "running")
SETTLING_EVENTS = frozenset({"run.completed", "run.failed", "run.canceled", "run.awaiting_input"})
STATUSES = ("pending", "running", "awaiting_input", "completed", "failed", "canceled")


async def runs_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    status = request.query.get("status", "")
    if status and status not in STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}.", param="status")
    workflow_id = request.query.get("workflow_id", "").strip()
    runs, has_more = await list_runs(
        request, person.principal, workflow_id, status, request.query.get("starting_after", "")
    )
    return render(
        request,
        "runs.html",
        person,
        runs=runs,
        has_more=has_more,
        status_filter=status,
        workflow_id=workflow_id,
        statuses=STATUSES,
    )


async def run_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    workflow_id, run_id = request.match_info["workflow_id"], request.match_info["run_id"]
    run = await get_run(request, person.principal, workflow_id, run_id)
    events = await run_events_so_far(request, person.principal, run_id, run["status"])
    if run["status"] in LIVE and events and events[-1].type in SETTLING_EVENTS:
        # It moved on between the two reads: show it as it is now, so the page's live
        # stream (which starts after these events) is not left waiting for nothing.
        run = await get_run(request, person.principal, workflow_id, run_id)
    return render(
        request,
        "run.html",
        person,
        run=run,
        events=[
            {"seq": e.seq, "type": e.type, "stage": e.stage, "at": e.created_at} for e in events
        ],
        deliveries=await deliveries(request, run_id),
    )


async def cancel_run(request: web.Request) -> web.StreamResponse:
    person, _ = await person_form(request)
    workflow_id, run_id = request.match_info["workflow_id"], request.match_info["run_id"]
    await get_run(request, person.principal, workflow_id, run_id)
    await request.config_dict[SERVICES].runs.CancelRun(
        runs_pb2.CancelRunRequest(caller=caller(person.principal), run_id=run_id), timeout=10
    )
    return web.Response(status=303, headers={"Location": request.path.rsplit("/", 1)[0]})


async def submit_input(request: web.Request) -> web.StreamResponse:
    person, form = await person_form(request)
    workflow_id, run_id = request.match_info["workflow_id"], request.match_info["run_id"]
    run = await get_run(request, person.principal, workflow_id, run_id)
    asked = run.get("human_input_request") or {}
    values = form_values(asked.get("fields") or [], form)
    await request.config_dict[SERVICES].runs.SubmitInput(
        runs_pb2.SubmitInputRequest(
            caller=caller(person.principal), run_id=run_id, values_json=dumps(values)
        ),
        timeout=10,
    )
    return web.Response(status=303, headers={"Location": request.path.rsplit("/", 1)[0]})


async def run_events(request: web.Request) -> web.StreamResponse:
    """The run's events as Server-Sent Events: the run page follows its stages live."""
    person = await require_person(request)
    workflow_id, run_id = request.match_info["workflow_id"], request.match_info["run_id"]
    await get_run(request, person.principal, workflow_id, run_id)
    return await stream_run_events(request, person.principal, run_id)


def setup(app: web.Application) -> None:
    app.router.add_get("/runs", runs_page)
    app.router.add_get("/workflows/{workflow_id}/runs/{run_id}", run_page)
    app.router.add_get("/workflows/{workflow_id}/runs/{run_id}/events", run_events)
    app.router.add_post("/workflows/{workflow_id}/runs/{run_id}/cancel", cancel_run)
    app.router.add_post("/workflows/{workflow_id}/runs/{run_id}/input", submit_input)
