"""GET /api/v1/workflows/:id/code: generated client code (see gateway/snippets)."""

import json

from aiohttp import web

from gateway.auth import WORKFLOWS_READ, require
from gateway.http import json_response
from gateway.keys import CONFIG, SERVICES
from gateway.routes.runs import caller
from gateway.snippets import LANGUAGES, VARIANTS, generate
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise InvalidArgument(f"{name} must be one of: {', '.join(allowed)}.", param=name)
    return (raw,)


async def get_code(request: web.Request) -> web.Response:
    principal = await require(request, WORKFLOWS_READ)
    languages = _choice(request, "language", LANGUAGES) or LANGUAGES
    variants = _choice(request, "variant", VARIANTS)
    # GetWorkflow answers NOT_FOUND outside the key's allowlist, like any unknown id.
    workflow = await request.app[SERVICES].runs.GetWorkflow(
        runs_pb2.GetWorkflowRequest(
            caller=caller(principal), workflow_id=request.match_info["workflow_id"]
        ),
        timeout=10,
    )
    snippets = generate(
        request.app[CONFIG].public_base_url,
        workflow.id,
        json.loads(workflow.fields_json),
        languages,
        variants,
    )
    return json_response({"data": snippets})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/workflows/{workflow_id}/code", get_code)
