"""Workflows: list, YAML/JSON editor (the API's validation, errors shown inline),
versions, publish, the Run panel and the Publish panel with Get Code."""

import json
from typing import Any

import grpc
from aiohttp import web

from console.definition_lines import line_of
from console.diffs import as_yaml, definition_diff
from console.render import render
from console.session import Person, person_form, require_person
from console.views.run_panel import start_panel_run
from gateway.keys import CONFIG, SERVICES
from gateway.routes.code import is_public
from gateway.routes.runs import caller
from gateway.snippets import generate
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument, WeftError, from_rpc_error

NEW_WORKFLOW_YAML = """\
slug: my-workflow
name: My workflow
description: What it does.
fields:
  - name: topic
    type: text
    required: true
stages:
  - id: answer
    type: template
    template: "Topic: {{ params.topic }} - {{ input_text }}"
"""


async def get_workflow(request: web.Request, person: Person) -> runs_pb2.Workflow:
    return await request.config_dict[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(
            caller=caller(person.principal), workflow_id=request.match_info["workflow_id"]
        ),
        timeout=10,
    )


async def workflows_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    reply = await request.config_dict[SERVICES].runs.ListWorkflows(
        runs_pb2.ListWorkflowsRequest(
            caller=caller(person.principal),
            limit=100,
            starting_after=request.query.get("starting_after", ""),
        ),
        timeout=10,
    )
    return render(
        request, "workflows.html", person, workflows=reply.workflows, has_more=reply.has_more
    )


def _invalid(exc: Exception) -> WeftError | None:
    """The validation error to show beside the editor, or None to let it propagate."""
    err = exc if isinstance(exc, WeftError) else from_rpc_error(exc)  # type: ignore[arg-type]
    return err if isinstance(err, InvalidArgument) else None


def _editor_error(
    request: web.Request,
    person: Person,
    text: str,
    workflow: runs_pb2.Workflow | None,
    err: WeftError,
) -> web.Response:
    """The editor again, with the text as sent and the error at its line."""
    line = line_of(text, err.param) if err.param else None
    return render(
        request,
        "editor.html",
        person,
        status=400,
        definition=text,
        workflow=workflow,
        error=err,
        error_line=line,
    )


async def new_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    return render(request, "editor.html", person, definition=NEW_WORKFLOW_YAML, workflow=None)


async def create(request: web.Request) -> web.StreamResponse:
    person, form = await person_form(request)
    text = form.get("definition", "")
    try:
        w = await request.config_dict[SERVICES].runs.CreateWorkflow(
            runs_pb2.CreateWorkflowRequest(caller=caller(person.principal), definition=text),
            timeout=10,
        )
    except grpc.RpcError as exc:
        err = _invalid(exc)
        if err is None:
            raise
        return _editor_error(request, person, text, None, err)
    return web.Response(status=303, headers={"Location": f"/app/workflows/{w.id}"})


def _draft_text(w: runs_pb2.Workflow) -> str:
    return as_yaml(json.loads(w.draft_json or w.definition_json or "{}"))


def version_diffs(versions: list[runs_pb2.WorkflowVersion], draft_json: str) -> dict[str, str]:
    """Each version against the one before it, and the draft against the latest."""
    ordered = sorted(versions, key=lambda v: v.version)
    diffs: dict[str, str] = {}
    previous: Any = {}
    for v in ordered:
        current = json.loads(v.definition_json)
        diffs[str(v.version)] = definition_diff(
            previous, current, f"v{v.version - 1}" if previous else "(none)", f"v{v.version}"
        )
        previous = current
    if draft_json:
        name = f"v{ordered[-1].version}" if ordered else "(none)"
        diffs["draft"] = definition_diff(previous, json.loads(draft_json), name, "draft")
    return diffs


async def edit_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    w = await get_workflow(request, person)
    return render(request, "editor.html", person, definition=_draft_text(w), workflow=w)


async def save(request: web.Request) -> web.StreamResponse:
    person, form = await person_form(request)
    w = await get_workflow(request, person)
    text = form.get("definition", "")
    try:
        await request.config_dict[SERVICES].runs.EditWorkflow(
            runs_pb2.EditWorkflowRequest(
                caller=caller(person.principal), workflow_id=w.id, definition=text
            ),
            timeout=10,
        )
    except grpc.RpcError as exc:
        err = _invalid(exc)
        if err is None:
            raise
        return _editor_error(request, person, text, w, err)
    return web.Response(status=303, headers={"Location": f"/app/workflows/{w.id}"})


async def publish(request: web.Request) -> web.StreamResponse:
    person, form = await person_form(request)
    w = await get_workflow(request, person)
    await request.config_dict[SERVICES].runs.PublishWorkflow(
        runs_pb2.PublishWorkflowRequest(
            caller=caller(person.principal), workflow_id=w.id, note=form.get("note", "")[:500]
        ),
        timeout=10,
    )
    return web.Response(status=303, headers={"Location": f"/app/workflows/{w.id}#publish"})


def _fields(w: runs_pb2.Workflow) -> list[dict[str, Any]]:
    source = json.loads(w.draft_json) if w.draft_json else None
    if source is not None and isinstance(source.get("fields"), list):
        return list(source["fields"])
    return list(json.loads(w.fields_json or "[]"))


async def workflow_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    w = await get_workflow(request, person)
    versions = await request.config_dict[SERVICES].runs.ListWorkflowVersions(
        runs_pb2.ListWorkflowVersionsRequest(caller=caller(person.principal), workflow_id=w.id),
        timeout=10,
    )
    public = request.app[CONFIG].public_base_url.rstrip("/")
    published_fields = json.loads(w.fields_json or "[]")
    return render(
        request,
        "workflow.html",
        person,
        workflow=w,
        fields=_fields(w),
        stages=json.loads(w.stages_json or "[]"),
        versions=sorted(versions.versions, key=lambda v: v.version, reverse=True),
        diffs=version_diffs(list(versions.versions), w.draft_json),
        endpoint_url=f"{public}/api/v1/endpoints/{w.slug}",
        endpoint_auth="public" if is_public(w) else "required",
        # The same code as GET /workflows/:id/code: keyless for a public endpoint.
        snippets=generate(public, w.id, published_fields, slug=w.slug, keyless=is_public(w)),
        owned=bool(w.owner_user_id or w.owner_team_id),
        has_draft=bool(w.draft_json),
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/workflows", workflows_page)
    app.router.add_get("/workflows/new", new_page)
    app.router.add_post("/workflows/new", create)
    app.router.add_get("/workflows/{workflow_id}", workflow_page)
    app.router.add_get("/workflows/{workflow_id}/edit", edit_page)
    app.router.add_post("/workflows/{workflow_id}/edit", save)
    app.router.add_post("/workflows/{workflow_id}/publish", publish)
    app.router.add_post("/workflows/{workflow_id}/run", start_panel_run)
