"""POST /api/v1/endpoints/:slug: a workflow's published endpoint (spec/API.md), and
GET /api/v1/endpoints/:slug/runs/:id, where a keyless caller reads its run.

For tools that send flat bodies: the declared fields sit at the top level of a JSON
object, or arrive as multipart form fields and file parts. `input_text`, the run's
built-in field, is always accepted (empty when absent). Everything else (auth,
allowlist, idempotency, billing, rate limits, the 201 answer) is run creation itself:
`runs.start_run`. A call without a key is taken when the endpoint is public
(gateway/public_endpoints.py): it runs as the workflow's payer.
"""

from typing import Any

import grpc
from aiohttp import web

from gateway import public_endpoints
from gateway.auth import RUNS_CREATE, require
from gateway.client_address import client_ip
from gateway.cors import ENDPOINT_ORIGINS, allow_origin
from gateway.http import dumps, query_int, read_json_object
from gateway.keys import SERVICES
from gateway.multipart_runs import declared_fields, is_form, read_multipart
from gateway.public_endpoints import KeylessCall
from gateway.routes.runs import (
    MAX_WAIT_SECONDS,
    caller,
    idempotency_key,
    start_form_run,
    start_run,
)
from gateway.routes.runs import run_data as keyed_run_data
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument, NotFound, WeftError, from_rpc_error

# Run options a flat body may carry at the top level unless a field has the name.
_OPTIONS = ("webhook_url", "attachment_ids")


def flat_param(err: WeftError) -> WeftError:
    """Errors about `params.<name>` name the top-level field of a flat body instead."""
    if err.param is not None and err.param.startswith("params."):
        err.param = err.param.removeprefix("params.")
        err.message = err.message.replace("params.", "")
    return err


def _options(body: dict[str, Any], declared: set[str]) -> tuple[list[str], str]:
    ids = body.get("attachment_ids") if "attachment_ids" not in declared else None
    if ids is None:
        ids = []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidArgument("attachment_ids must be a list of ids.", param="attachment_ids")
    url = body.get("webhook_url") if "webhook_url" not in declared else None
    if url is not None and not isinstance(url, str):
        raise InvalidArgument("webhook_url must be a string.", param="webhook_url")
    return ids, url or ""


async def _public_endpoint(request: web.Request, slug: str) -> runs_pb2.Endpoint:
    """The endpoint by slug (404 when there is none), its CORS origins applied."""
    endpoint: runs_pb2.Endpoint = await request.app[SERVICES].runs.GetEndpoint(
        runs_pb2.GetEndpointRequest(slug=slug), timeout=10
    )
    allow_origin(request, endpoint.cors_origins)
    return endpoint


async def _origins(request: web.Request, slug: str) -> list[str]:
    """A public endpoint's CORS origins, for preflights (none for any other)."""
    try:
        endpoint = await request.app[SERVICES].runs.GetEndpoint(
            runs_pb2.GetEndpointRequest(slug=slug), timeout=10
        )
    except grpc.RpcError as exc:
        if from_rpc_error(exc).code == "NOT_FOUND":
            return []
        raise
    return list(endpoint.cors_origins) if endpoint.auth == "public" else []


async def _who(request: web.Request) -> tuple[auth_pb2.Principal, KeylessCall | None]:
    """With a key: its principal. Without: the payer of a public endpoint (401 when the
    endpoint needs a key, exactly as for a bad key)."""
    if "Authorization" in request.headers:
        return await require(request, RUNS_CREATE), None
    try:
        endpoint = await _public_endpoint(request, request.match_info["slug"])
    except grpc.RpcError as exc:
        if from_rpc_error(exc).code != "NOT_FOUND":
            raise
        return await require(request, RUNS_CREATE), None  # its 401, as for a bad key
    if endpoint.auth != "public":
        return await require(request, RUNS_CREATE), None
    keyless = KeylessCall(endpoint.slug, client_ip(request))
    return await public_endpoints.payer(request, endpoint), keyless


async def call_endpoint(request: web.Request) -> web.Response:
    principal, keyless = await _who(request)
    idempotency_key(request)  # a bad header is a 400 before anything else
    workflow_id, fields = await declared_fields(
        request, caller(principal), request.match_info["slug"], by_slug=True
    )
    names = {f["name"] for f in fields}
    try:
        if is_form(request):
            form_body = await read_multipart(request, principal)
            return await start_form_run(
                request, principal, workflow_id, fields, form_body, keyless=keyless
            )
        body = await read_json_object(request)
        for name in body:
            if name not in names and name not in _OPTIONS and name != "input_text":
                raise InvalidArgument(
                    f"Unknown field {name!r}: the workflow declares no such field.", param=name
                )
        if keyless is not None:
            public_endpoints.check_json_options(body, names)
        ids, webhook_url = _options(body, names)
        params = {k: v for k, v in body.items() if k in names}
        if keyless is not None:
            public_endpoints.check_references(fields, params, ids, ())
        input_text = body.get("input_text", "")
        if input_text is not None and not isinstance(input_text, str):
            raise InvalidArgument("input_text must be a string.", param="input_text")
        return await start_run(
            request,
            principal,
            workflow_id,
            body,
            input_text=input_text or "",
            params=params,
            attachment_ids=ids,
            webhook_url=webhook_url,
            keyless=keyless,
        )
    except WeftError as err:
        raise flat_param(err) from None
    except grpc.RpcError as exc:
        raise flat_param(from_rpc_error(exc)) from None


async def get_endpoint_run(request: web.Request) -> web.Response:
    """A keyless caller's run, read with its run token (`?wait=` long-polls as for
    GET /workflow-runs/:id)."""
    slug, run_id = request.match_info["slug"], request.match_info["run_id"]
    public_endpoints.require_run_token(request, run_id)
    endpoint = await _public_endpoint(request, slug)
    wait = query_int(request, "wait", 0, 0, MAX_WAIT_SECONDS)
    principal = await public_endpoints.payer(request, endpoint)
    run = await request.app[SERVICES].runs.GetRun(
        runs_pb2.GetRunRequest(caller=caller(principal), run_id=run_id, wait_seconds=wait),
        timeout=wait + 10,
    )
    if run.workflow_id != endpoint.workflow_id:
        raise NotFound(f"No such run: {run_id}.")
    data = keyed_run_data(request, run)
    data["links"] = public_endpoints.run_links(request, slug, run_id)
    return web.Response(
        text=dumps({"data": data}), content_type="application/json", charset="utf-8"
    )


def setup(app: web.Application) -> None:
    """Registers the endpoint routes and what keyless calls need."""
    public_endpoints.setup(app)
    app[ENDPOINT_ORIGINS] = _origins
    app.router.add_post("/api/v1/endpoints/{slug}", call_endpoint)
    app.router.add_get("/api/v1/endpoints/{slug}/runs/{run_id}", get_endpoint_run)
