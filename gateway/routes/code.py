"""GET /api/v1/workflows/:id/code: generated client code (see gateway/snippets)."""

import json

from aiohttp import web

from gateway.auth import WORKFLOWS_READ, require
from gateway.http import json_response
from gateway.keys import CONFIG, SERVICES
from gateway.routes.runs import caller
from gateway.snippets import LANGUAGES, VARIANTS, choose_variants, generate
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument

# `?auth=`: code that sends the API key, or that calls the public endpoint without one.
AUTHS = ("key", "none")


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise InvalidArgument(f"{name} must be one of: {', '.join(allowed)}.", param=name)
    return raw


def is_public(workflow: runs_pb2.Workflow) -> bool:
    """Whether the endpoint takes calls without a key: its latest published version says
    `endpoint.auth: public` (before the first publish, the settings are the draft's)."""
    endpoint = json.loads(workflow.endpoint_json or "{}")
    return workflow.version > 0 and endpoint.get("auth") == "public"


def keyless_code(workflow: runs_pb2.Workflow, asked: str | None) -> bool:
    """Keyless code by default for a public endpoint; `auth=none` only for one."""
    if asked is None:
        return is_public(workflow)
    if asked == "none" and not is_public(workflow):
        raise InvalidArgument(
            f"auth=none needs a public endpoint: workflow {workflow.id}'s latest published"
            " version does not set endpoint.auth to public (publish one that does, or ask"
            " auth=key).",
            param="auth",
        )
    return asked == "none"


async def get_code(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    language = _choice(request, "language", LANGUAGES)
    variant = _choice(request, "variant", VARIANTS)
    auth = _choice(request, "auth", AUTHS)
    # GetWorkflow answers NOT_FOUND outside the key's allowlist, like any unknown id.
    workflow = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(
            caller=caller(principal), workflow_id=request.match_info["workflow_id"]
        ),
        timeout=10,
    )
    fields = json.loads(workflow.fields_json)
    keyless = keyless_code(workflow, auth)
    snippets = generate(
        request.app[CONFIG].public_base_url,
        workflow.id,
        fields,
        (language,) if language else LANGUAGES,
        choose_variants(fields, keyless, variant),
        slug=workflow.slug,
        keyless=keyless,
    )
    return json_response({"data": snippets})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/workflows/{workflow_id}/code", get_code)
