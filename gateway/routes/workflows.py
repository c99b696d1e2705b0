"""Routes for workflows (spec/API.md, v1.1 "Workflows owned and published"): reading
them, and building them: drafts from JSON or YAML, publishing immutable versions,
archiving, copying."""

import json
from typing import Any

from aiohttp import web

from gateway.auth import WORKFLOWS_READ, WORKFLOWS_WRITE, require
from gateway.http import json_response, query_int, read_json_object
from gateway.keys import CONFIG, SERVICES
from gateway.routes.runs import caller
from gateway.workflow_openapi import WorkflowInfo, workflow_document
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument, WeftError

# Bodies read as YAML (anything else must be JSON).
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})


def _base(request: web.Request) -> str:
    return request.app[CONFIG].public_base_url.rstrip("/")


def _owner(w: runs_pb2.Workflow) -> dict[str, str] | None:
    if w.owner_team_id:
        return {"type": "team", "id": w.owner_team_id}
    if w.owner_user_id:
        return {"type": "user", "id": w.owner_user_id}
    return None


def workflow_summary(w: runs_pb2.Workflow) -> dict[str, Any]:
    owner = _owner(w)
    return {
        "id": w.id,
        "slug": w.slug,
        "name": w.name,
        "description": w.description,
        "version": w.version or None,  # the latest published; null before the first
        "owner": owner,
        "visibility": "private" if owner else "catalog",
        "archived_at": w.archived_at or None,
        "updated_at": w.updated_at,
    }


def workflow_detail(request: web.Request, w: runs_pb2.Workflow) -> dict[str, Any]:
    base = _base(request)
    draft = None
    if w.draft_json:
        draft = {
            "revision": w.draft_revision,
            "updated_at": w.draft_updated_at,
            "definition": json.loads(w.draft_json),
        }
    return {
        **workflow_summary(w),
        "fields": json.loads(w.fields_json),
        "stages": json.loads(w.stages_json),
        "draft": draft,
        "endpoint_url": f"{base}/api/v1/endpoints/{w.slug}",
        "endpoint": {
            **json.loads(w.endpoint_json or "{}"),
            "url": f"{base}/api/v1/endpoints/{w.slug}",
        },
        "created_at": w.created_at,
        "links": {
            "self": f"{base}/api/v1/workflows/{w.id}",
            "runs": f"{base}/api/v1/workflows/{w.id}/runs",
            "code": f"{base}/api/v1/workflows/{w.id}/code",
            "endpoint": f"{base}/api/v1/endpoints/{w.slug}",
            "versions": f"{base}/api/v1/workflows/{w.id}/versions",
            "app": f"{base}/app/workflows/{w.id}",
        },
    }


def version_data(v: runs_pb2.WorkflowVersion) -> dict[str, Any]:
    return {
        "workflow_id": v.workflow_id,
        "version": v.version,
        "note": v.note,
        "published_by": v.published_by or None,
        "created_at": v.created_at,
        "definition": json.loads(v.definition_json),
    }


async def definition_text(request: web.Request) -> str:
    """The body as definition text: YAML for a YAML content type, else a JSON object."""
    if request.content_type in YAML_TYPES:
        raw = await request.read()  # bounded by client_max_size (413 beyond it)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("The YAML body is not UTF-8.", param="definition") from None
    if request.content_type not in JSON_TYPES:
        raise WeftError(
            "Send the definition as JSON (application/json) or YAML (application/yaml).",
            code="UNSUPPORTED_MEDIA_TYPE",
        )
    return json.dumps(await read_json_object(request))


def _ref(request: web.Request) -> str:
    return request.match_info["workflow_id"]


async def _writer(request: web.Request) -> runs_pb2.Caller:
    principal: auth_pb2.Principal = await require(request, WORKFLOWS_WRITE)
    return caller(principal)


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
    reply = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(caller=caller(principal), workflow_id=_ref(request)),
        timeout=10,
    )
    return json_response({"data": workflow_detail(request, reply)})


async def create_workflow(request: web.Request) -> web.Response:
    who = await _writer(request)
    text = await definition_text(request)
    w = await request.app[SERVICES].runs.CreateWorkflow(
        runs_pb2.CreateWorkflowRequest(caller=who, definition=text), timeout=10
    )
    return json_response({"data": workflow_detail(request, w)}, status=201)


async def edit_workflow(request: web.Request) -> web.Response:
    """PUT replaces the draft; PATCH merges a JSON Merge Patch (RFC 7396) into it."""
    who = await _writer(request)
    text = await definition_text(request)
    w = await request.app[SERVICES].runs.EditWorkflow(
        runs_pb2.EditWorkflowRequest(
            caller=who, workflow_id=_ref(request), definition=text, merge=request.method == "PATCH"
        ),
        timeout=10,
    )
    return json_response({"data": workflow_detail(request, w)})


async def publish_workflow(request: web.Request) -> web.Response:
    who = await _writer(request)
    body = await read_json_object(request) if request.can_read_body else {}
    note = body.get("note", "")
    if not isinstance(note, str):
        raise InvalidArgument("note must be a string.", param="note")
    v = await request.app[SERVICES].runs.PublishWorkflow(
        runs_pb2.PublishWorkflowRequest(caller=who, workflow_id=_ref(request), note=note),
        timeout=10,
    )
    return json_response({"data": version_data(v)}, status=201)


async def list_versions(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    reply = await request.app[SERVICES].runs.ListWorkflowVersions(
        runs_pb2.ListWorkflowVersionsRequest(caller=caller(principal), workflow_id=_ref(request)),
        timeout=10,
    )
    return json_response({"data": [version_data(v) for v in reply.versions], "has_more": False})


async def get_version(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    raw = request.match_info["version"]
    if not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise InvalidArgument("version must be a positive integer.", param="version")
    v = await request.app[SERVICES].runs.GetWorkflowVersion(
        runs_pb2.GetWorkflowVersionRequest(
            caller=caller(principal), workflow_id=_ref(request), version=int(raw)
        ),
        timeout=10,
    )
    return json_response({"data": version_data(v)})


async def archive_workflow(request: web.Request) -> web.Response:
    who = await _writer(request)
    w = await request.app[SERVICES].runs.ArchiveWorkflow(
        runs_pb2.ArchiveWorkflowRequest(caller=who, workflow_id=_ref(request)), timeout=10
    )
    return json_response({"data": workflow_detail(request, w)})


async def duplicate_workflow(request: web.Request) -> web.Response:
    who = await _writer(request)
    body = await read_json_object(request)
    slug, name = body.get("slug"), body.get("name", "")
    if not isinstance(slug, str) or not slug:
        raise InvalidArgument(
            "slug is required: the copy's endpoint slug.", code="MISSING_PARAM", param="slug"
        )
    if not isinstance(name, str):
        raise InvalidArgument("name must be a string.", param="name")
    w = await request.app[SERVICES].runs.DuplicateWorkflow(
        runs_pb2.DuplicateWorkflowRequest(
            caller=who, workflow_id=_ref(request), slug=slug, name=name
        ),
        timeout=10,
    )
    return json_response({"data": workflow_detail(request, w)}, status=201)


async def get_workflow_openapi(request: web.Request) -> web.Response:
    """An OpenAPI 3.1 document for this one workflow, from its current definition."""
    principal = await require(request, WORKFLOWS_READ)
    # GetWorkflow answers NOT_FOUND outside the key's allowlist, like any unknown id.
    w = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(caller=caller(principal), workflow_id=_ref(request)),
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
    app.router.add_post("/api/v1/workflows", create_workflow)
    app.router.add_get("/api/v1/workflows/{workflow_id}", get_workflow)
    app.router.add_put("/api/v1/workflows/{workflow_id}", edit_workflow)
    app.router.add_patch("/api/v1/workflows/{workflow_id}", edit_workflow)
    app.router.add_post("/api/v1/workflows/{workflow_id}/publish", publish_workflow)
    app.router.add_get("/api/v1/workflows/{workflow_id}/versions", list_versions)
    app.router.add_get("/api/v1/workflows/{workflow_id}/versions/{version}", get_version)
    app.router.add_post("/api/v1/workflows/{workflow_id}/archive", archive_workflow)
    app.router.add_post("/api/v1/workflows/{workflow_id}/duplicate", duplicate_workflow)
    app.router.add_get("/api/v1/workflows/{workflow_id}/openapi.json", get_workflow_openapi)
