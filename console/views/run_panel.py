"""The Run panel's POST: a multipart form of the workflow's fields (files included),
run as the draft or a version through the API's own run creation."""

import dataclasses
import json

from aiohttp import web

from console.security import same
from console.session import CsrfFailed, require_person
from gateway.keys import SERVICES
from gateway.multipart_runs import declared_fields, form_run, read_multipart
from gateway.routes.runs import caller, run_version, start_run
from gateway.uploads import discard_uploads
from weftcore.errors import InvalidArgument

_CONSOLE_FIELDS = ("csrf_token", "version")


async def start_panel_run(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    if not request.content_type.startswith("multipart/form-data"):
        raise InvalidArgument("The Run panel sends multipart/form-data.", param="body")
    workflow_id, fields = await declared_fields(
        request, caller(person.principal), request.match_info["workflow_id"]
    )
    body = await read_multipart(request, person.principal)
    given = dict(body.fields)
    uploaded = [attachment_id for _, attachment_id, _ in body.files]
    if not same(person.csrf, given.get("csrf_token", "")):
        await discard_uploads(request.app[SERVICES].storage, person.principal.user_id, uploaded)
        raise CsrfFailed()
    body = dataclasses.replace(
        body, fields=[(n, v) for n, v in body.fields if n not in _CONSOLE_FIELDS]
    )
    # Empty optional inputs are left out, so the workflow's defaults apply.
    required = {f["name"] for f in fields if f.get("required")} | {"input_text"}
    body.fields = [(n, v) for n, v in body.fields if v != "" or n in required]
    try:
        form = form_run(fields, body)
        response = await start_run(
            request,
            person.principal,
            workflow_id,
            {},
            input_text=form.input_text,
            params=form.params,
            attachment_ids=form.attachment_ids,
            webhook_url=form.webhook_url,
            request_hash="",
            version=run_version(given.get("version") or None),
        )
    except Exception:
        await discard_uploads(request.app[SERVICES].storage, person.principal.user_id, uploaded)
        raise
    run = json.loads(response.text or "{}")["data"]
    return web.Response(
        status=303, headers={"Location": f"/app/workflows/{run['workflow_id']}/runs/{run['id']}"}
    )
