"""Routes for runs (spec/API.md): create, read (long-poll), list, cancel, answer input.

`start_run` is the one way every run-creating route (this one, published endpoints)
calls CreateRun: idempotency header, rate-limit headers, links.
"""

import json
from typing import Any

import grpc
from aiohttp import web

from gateway import public_endpoints
from gateway.auth import RUNS_CREATE, require
from gateway.http import dumps, http_status, json_response, query_int, read_json_object
from gateway.idempotency import idempotency_key
from gateway.keys import CONFIG, SERVICES
from gateway.multipart_runs import (
    MultipartBody,
    declared_fields,
    form_run,
    is_form,
    read_multipart,
)
from gateway.public_endpoints import KeylessCall
from gateway.ratelimit import rate_limit_headers
from gateway.run_cache import TerminalRunCache, Viewer
from gateway.uploads import discard_uploads
from weft.auth.v1 import auth_pb2
from weft.idempotency.v1 import idempotency_pb2
from weft.runs.v1 import runs_pb2
from weftcore.canonical import json_body_hash
from weftcore.context import request_id_var
from weftcore.errors import InvalidArgument, WeftError, from_rpc_error

RUN_CACHE = web.AppKey("terminal_runs", TerminalRunCache)
MAX_WAIT_SECONDS = 60
_CREATE_FIELDS = frozenset(
    {
        "input_text",
        "params",
        "attachment_ids",
        "webhook_url",
        "version",
        "timeout_seconds",
        "priority",
    }
)


def caller(p: auth_pb2.Principal) -> runs_pb2.Caller:
    """The runs service's view of the authenticated principal."""
    return runs_pb2.Caller(
        user_id=p.user_id,
        team_id=p.team_id,
        plan=p.plan,
        has_allowlist=p.has_allowlist,
        workflow_allowlist=list(p.workflow_allowlist),
        version_pins=dict(p.version_pins),
        team_role=p.team_role,
    )


def viewer(p: auth_pb2.Principal) -> Viewer:
    """Who may see which runs, for the gateway's own cache of finished runs."""
    return Viewer(p.user_id, frozenset(p.workflow_allowlist) if p.has_allowlist else None)


def run_links(request: web.Request, run_id: str, workflow_id: str) -> dict[str, str]:
    base = request.app[CONFIG].public_base_url.rstrip("/")
    return {
        "self": f"{base}/api/v1/workflow-runs/{run_id}",
        "app": f"{base}/app/workflows/{workflow_id}/runs/{run_id}",
    }


def run_data(request: web.Request, run: runs_pb2.Run) -> dict[str, Any]:
    """The public run object with its links."""
    data: dict[str, Any] = json.loads(run.snapshot_json)
    data["links"] = run_links(request, run.id, run.workflow_id)
    return data


async def start_run(
    request: web.Request,
    principal: auth_pb2.Principal,
    workflow_ref: str,
    body: dict[str, Any],
    *,
    input_text: str,
    params: Any,
    attachment_ids: list[str],
    webhook_url: str,
    request_hash: str | None = None,
    version: str | None = None,
    rerun: dict[str, Any] | None = None,
    timeout_seconds: int | None = None,
    priority: int | None = None,
    keyless: KeylessCall | None = None,
) -> web.Response:
    """CreateRun for an already validated request; answers 201 (or the replayed answer).

    `request_hash`: the idempotency hash when the body is not JSON (multipart).
    `version`: the run's version as given (`run_version`); default: `?version=`.
    `keyless`: a public endpoint's call without a key (`principal` is its payer)."""
    key = idempotency_key(request)
    if request_hash is None:
        request_hash = json_body_hash(body) if key else ""
    run_caller = caller(principal)
    if keyless is not None:
        run_caller.client_ip = keyless.client_ip
    create = runs_pb2.CreateRunRequest(
        caller=run_caller,
        workflow_id=workflow_ref,
        input_text=input_text,
        params_json=dumps(params if params is not None else {}),
        attachment_ids=attachment_ids,
        webhook_url=webhook_url,
        idempotency=idempotency_pb2.Idempotency(
            key=key,
            method=request.method,
            path=request.path,
            request_hash=request_hash if key else "",
        ),
        request_id=request_id_var.get(),
        version=run_version(request.query.get("version")) if version is None else version,
    )
    if timeout_seconds is not None:
        create.timeout_seconds = timeout_seconds
    if priority is not None:
        create.priority = priority
    if rerun is not None:
        create.rerun_of = rerun["run_id"]
        create.from_stage = rerun["from_stage"]
        create.has_input_text = rerun["input_given"]
        create.has_params = rerun["params_given"]
    services = request.app[SERVICES]
    if attachment_ids:
        # Reading attachments can take a while: not in a batch, where every request
        # would wait for it.
        reply = await services.runs.CreateRun(create, timeout=30)
    else:
        reply = await services.create_run.call(create)
    headers = rate_limit_headers(reply.rate_limit if reply.HasField("rate_limit") else None)
    if reply.replayed:
        headers["Idempotent-Replayed"] = "true"
    run = reply.run
    data = {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "created_at": run.created_at,
        "links": run_links(request, run.id, run.workflow_id),
    }
    if keyless is not None:
        data["links"] = public_endpoints.run_links(request, keyless.slug, run.id)
        data["run_token"] = public_endpoints.run_token(request, run.id)
    return json_response({"data": data}, status=201, headers=headers)


async def start_form_run(
    request: web.Request,
    principal: auth_pb2.Principal,
    workflow_id: str,
    fields: list[dict[str, Any]],
    body: MultipartBody,
    keyless: KeylessCall | None = None,
) -> web.Response:
    """`start_run` for a multipart body, bound to the workflow's declared `fields`
    (`form_run`); the idempotency hash is the multipart body's own.

    The body's files were stored before the run could be created. When no new run uses
    them (a replay, or a refusal such as 400/409), they are deleted again; after a 5xx it
    is unknown whether the run committed, so they are kept."""
    uploaded = [attachment_id for _, attachment_id, _ in body.files]
    try:
        form = form_run(fields, body)
        if keyless is not None:
            public_endpoints.check_references(fields, form.params, form.attachment_ids, uploaded)
            if form.webhook_url:
                raise InvalidArgument(
                    "webhook_url is not available without an API key on a public endpoint.",
                    param="webhook_url",
                )
        response = await start_run(
            request,
            principal,
            workflow_id,
            {},
            input_text=form.input_text,
            params=form.params,
            attachment_ids=form.attachment_ids,
            webhook_url=form.webhook_url,
            request_hash=body.request_hash,
            keyless=keyless,
        )
    except (WeftError, grpc.RpcError) as exc:
        err = exc if isinstance(exc, WeftError) else from_rpc_error(exc)
        if http_status(err) < 500:
            await discard_uploads(request.app[SERVICES].storage, principal.user_id, uploaded)
        raise
    if response.headers.get("Idempotent-Replayed") == "true":
        await discard_uploads(request.app[SERVICES].storage, principal.user_id, uploaded)
    return response


def run_version(value: Any) -> str:
    """Which definition a run executes, as asked: "" the latest published version, a
    version number (a positive integer, or its digits), or "draft" (the owner's)."""
    if value is None or value == "":
        return ""
    if value == "draft":
        return "draft"
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**31 - 1:
        return str(value)
    raise InvalidArgument(
        'version must be a published version\'s number or "draft".', param="version"
    )


def optional_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """An optional integer field of a body, within [low, high] (400 naming it if not)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be an integer from {low} to {high:,}.", param=name)
    return value


def _check_create_body(body: dict[str, Any]) -> tuple[str, Any, list[str], str]:
    for name in body:
        if name not in _CREATE_FIELDS:
            raise InvalidArgument(f"Unknown field {name!r}.", param=name)
    if "input_text" not in body or body["input_text"] is None:
        raise InvalidArgument("input_text is required.", code="MISSING_PARAM", param="input_text")
    input_text = body["input_text"]
    if not isinstance(input_text, str):
        raise InvalidArgument("input_text must be a string.", param="input_text")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidArgument("params must be an object.", param="params")
    ids = body.get("attachment_ids") or []
    if not isinstance(ids, list):
        raise InvalidArgument("attachment_ids must be a list of ids.", param="attachment_ids")
    for i, att in enumerate(ids):
        if not isinstance(att, str):
            raise InvalidArgument(
                "attachment_ids must be a list of ids.", param=f"attachment_ids[{i}]"
            )
    webhook_url = body.get("webhook_url") or ""
    if not isinstance(webhook_url, str):
        raise InvalidArgument("webhook_url must be a string.", param="webhook_url")
    return input_text, params, ids, webhook_url


async def create_run(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    idempotency_key(request)  # a bad header is a 400 before anything else
    if is_form(request):
        return await _create_run_multipart(request, principal)
    body = await read_json_object(request)
    input_text, params, ids, webhook_url = _check_create_body(body)
    return await start_run(
        request,
        principal,
        request.match_info["workflow_id"],
        body,
        input_text=input_text,
        params=params,
        version=run_version(body["version"] if "version" in body else request.query.get("version")),
        attachment_ids=ids,
        webhook_url=webhook_url,
        # The upper bound is the runs service's (its configured maximum).
        timeout_seconds=optional_int(body, "timeout_seconds", 1, 2**31 - 1),
        priority=optional_int(body, "priority", 0, 9),
    )


_RERUN_FIELDS = frozenset(
    {"from_stage", "input_text", "params", "version", "webhook_url", "timeout_seconds", "priority"}
)


async def rerun_run(request: web.Request) -> web.Response:
    """A new run of a finished one, from one of its stages (domain/rerun.py)."""
    principal = await require(request, RUNS_CREATE)
    idempotency_key(request)  # a bad header is a 400 before anything else
    body = await read_json_object(request) if request.can_read_body else {}
    for name in body:
        if name not in _RERUN_FIELDS:
            raise InvalidArgument(f"Unknown field {name!r}.", param=name)
    from_stage = body.get("from_stage") or ""
    if not isinstance(from_stage, str):
        raise InvalidArgument("from_stage must be a stage id.", param="from_stage")
    input_text = body.get("input_text")
    if input_text is not None and not isinstance(input_text, str):
        raise InvalidArgument("input_text must be a string.", param="input_text")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidArgument("params must be an object.", param="params")
    webhook_url = body.get("webhook_url") or ""
    if not isinstance(webhook_url, str):
        raise InvalidArgument("webhook_url must be a string.", param="webhook_url")
    return await start_run(
        request,
        principal,
        "",
        body,
        input_text=input_text or "",
        params=params,
        attachment_ids=[],
        webhook_url=webhook_url,
        version=run_version(body.get("version")),
        timeout_seconds=optional_int(body, "timeout_seconds", 1, 2**31 - 1),
        priority=optional_int(body, "priority", 0, 9),
        rerun={
            "run_id": request.match_info["run_id"],
            "from_stage": from_stage,
            "input_given": input_text is not None,
            "params_given": params is not None,
        },
    )


async def _create_run_multipart(
    request: web.Request, principal: auth_pb2.Principal
) -> web.Response:
    """`input_text` and each declared field as form fields, files bound to `file`
    fields by name or added as attachments (gateway/multipart_runs.py)."""
    workflow_id, fields = await declared_fields(
        request, caller(principal), request.match_info["workflow_id"]
    )
    body = await read_multipart(request, principal)
    if not any(name == "input_text" for name, _ in body.fields):
        raise InvalidArgument("input_text is required.", code="MISSING_PARAM", param="input_text")
    return await start_form_run(request, principal, workflow_id, fields, body)


async def get_run(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    wait = query_int(request, "wait", 0, 0, MAX_WAIT_SECONDS)
    run_id = request.match_info["run_id"]
    cache = request.app[RUN_CACHE]
    body = cache.get(run_id, viewer(principal))
    if body is None:
        run = await request.app[SERVICES].runs.GetRun(
            runs_pb2.GetRunRequest(caller=caller(principal), run_id=run_id, wait_seconds=wait),
            timeout=wait + 10,
        )
        body = dumps({"data": run_data(request, run)})
        cache.put(run.id, run.user_id, run.workflow_id, run.status, body)
    return web.Response(text=body, content_type="application/json", charset="utf-8")


async def list_runs(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    reply = await request.app[SERVICES].runs.ListRuns(
        runs_pb2.ListRunsRequest(
            caller=caller(principal),
            workflow_id=request.query.get("workflow_id", ""),
            status=request.query.get("status", ""),
            limit=query_int(request, "limit", 20, 1, 100),
            starting_after=request.query.get("starting_after", ""),
        ),
        timeout=10,
    )
    return json_response(
        {"data": [run_data(request, r) for r in reply.runs], "has_more": reply.has_more}
    )


async def cancel_run(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    run = await request.app[SERVICES].runs.CancelRun(
        runs_pb2.CancelRunRequest(caller=caller(principal), run_id=request.match_info["run_id"]),
        timeout=10,
    )
    return json_response({"data": run_data(request, run)})


async def submit_input(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    body = await read_json_object(request)
    for name in body:
        if name != "values":
            raise InvalidArgument(f"Unknown field {name!r}.", param=name)
    values = body.get("values")
    if not isinstance(values, dict):
        raise InvalidArgument(
            "values (an object of the requested fields) is required.",
            code="MISSING_PARAM" if values is None else "INVALID_PARAM",
            param="values",
        )
    run = await request.app[SERVICES].runs.SubmitInput(
        runs_pb2.SubmitInputRequest(
            caller=caller(principal),
            run_id=request.match_info["run_id"],
            values_json=dumps(values),
        ),
        timeout=10,
    )
    return json_response({"data": run_data(request, run)})


def setup(app: web.Application) -> None:
    app[RUN_CACHE] = TerminalRunCache()
    app.router.add_post("/api/v1/workflows/{workflow_id}/runs", create_run)
    app.router.add_get("/api/v1/workflow-runs", list_runs)
    app.router.add_get("/api/v1/workflow-runs/{run_id}", get_run)
    app.router.add_post("/api/v1/workflow-runs/{run_id}/cancel", cancel_run)
    app.router.add_post("/api/v1/workflow-runs/{run_id}/rerun", rerun_run)
    app.router.add_post("/api/v1/workflow-runs/{run_id}/input", submit_input)
