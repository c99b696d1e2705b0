"""POST /api/v1/endpoints/:slug: a workflow's published endpoint (spec/API.md).

For tools that send flat bodies: the declared fields sit at the top level of a JSON
object, or arrive as multipart form fields and file parts. `input_text`, the run's
built-in field, is always accepted (empty when absent). Everything else (auth,
allowlist, idempotency, billing, rate limits, the 201 answer) is run creation itself:
`runs.start_run`.
"""

from typing import Any

import grpc
from aiohttp import web

from gateway.auth import RUNS_CREATE, require
from gateway.http import read_json_object
from gateway.multipart_runs import declared_fields, is_form, read_multipart
from gateway.routes.runs import caller, idempotency_key, start_form_run, start_run
from weftcore.errors import InvalidArgument, WeftError, from_rpc_error

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


async def call_endpoint(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    idempotency_key(request)  # a bad header is a 400 before anything else
    workflow_id, fields = await declared_fields(
        request, caller(principal), request.match_info["slug"], by_slug=True
    )
    names = {f["name"] for f in fields}
    try:
        if is_form(request):
            form_body = await read_multipart(request, principal)
            return await start_form_run(request, principal, workflow_id, fields, form_body)
        body = await read_json_object(request)
        for name in body:
            if name not in names and name not in _OPTIONS and name != "input_text":
                raise InvalidArgument(
                    f"Unknown field {name!r}: the workflow declares no such field.", param=name
                )
        ids, webhook_url = _options(body, names)
        params = {k: v for k, v in body.items() if k in names}
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
        )
    except WeftError as err:
        raise flat_param(err) from None
    except grpc.RpcError as exc:
        raise flat_param(from_rpc_error(exc)) from None


def setup(app: web.Application) -> None:
    """Registers POST /api/v1/endpoints/{slug}."""
    app.router.add_post("/api/v1/endpoints/{slug}", call_endpoint)
