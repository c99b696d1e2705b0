"""Routes for workflows (spec/API.md): the list and one workflow with its trigger."""

import json
from typing import Any

from aiohttp import web

from gateway.auth import WORKFLOWS_READ, require
from gateway.http import json_response, query_int
from gateway.keys import CONFIG, SERVICES
from gateway.routes.runs import caller
from gateway.workflow_openapi import WorkflowInfo, workflow_document
from weft.runs.v1 import runs_pb2


def _base(request: web.Request) -> str:
    return request.app[CONFIG].public_base_url.rstrip("/")


def workflow_summary(w: runs_pb2.Workflow) -> dict[str, Any]:
    return {
        "id": w.id,
        "slug": w.slug,
        "name": w.name,
        "description": w.description,
        "version": w.version,
        "updated_at": w.updated_at,
    }


def workflow_detail(request: web.Request, w: runs_pb2.Workflow) -> dict[str, Any]:
    base = _base(request)
    return {
        **workflow_summary(w),
        "fields": json.loads(w.fields_json),
        "stages": json.loads(w.stages_json),
        "endpoint_url": f"{base}/api/v1/endpoints/{w.slug}",
        "created_at": w.created_at,
        "links": {
            "self": f"{base}/api/v1/workflows/{w.id}",
            "runs": f"{base}/api/v1/workflows/{w.id}/runs",
            "code": f"{base}/api/v1/workflows/{w.id}/code",
            "endpoint": f"{base}/api/v1/endpoints/{w.slug}",
            "app": f"{base}/app/workflows/{w.id}",
        },
    }


async def list_workflows(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    reply = await request.app[SERVICES].runs.ListWorkflows(
        runs_pb2.ListWorkflowsRequest(
            caller=caller(principal),
            limit=query_int(request, "limit", 20, 1, 100),
            starting_after=request.query.get("starting_after", ""),
        ),
        timeout=10,
    )
    return json_response(
        {"data": [workflow_summary(w) for w in reply.workflows], "has_more": reply.has_more}
    )


async def get_workflow(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    ref = request.match_info["workflow_id"]
    reply = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(caller=caller(principal), workflow_id=ref), timeout=10
    )
    return json_response({"data": workflow_detail(request, reply)})


async def get_workflow_openapi(request: web.Request) -> web.Response:
    """An OpenAPI 3.1 document for this one workflow, from its current definition."""
    principal = await require(request, WORKFLOWS_READ)
    # GetWorkflow answers NOT_FOUND outside the key's allowlist, like any unknown id.
    w = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(
            caller=caller(principal), workflow_id=request.match_info["workflow_id"]
        ),
        timeout=10,
    )
    info = WorkflowInfo(
        id=w.id,
        slug=w.slug,
        name=w.name,
        description=w.description,
        version=w.version,
        fields=json.loads(w.fields_json),
        definition=json.loads(w.definition_json),
    )
    return json_response(workflow_document(_base(request), info))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/workflows", list_workflows)
    app.router.add_get("/api/v1/workflows/{workflow_id}", get_workflow)
    app.router.add_get("/api/v1/workflows/{workflow_id}/openapi.json", get_workflow_openapi)
