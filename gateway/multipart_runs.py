"""Run creation from multipart/form-data, shared by POST /workflows/:id/runs and the
published endpoints.

Form fields are coerced to the workflow's declared types; each file part is streamed to
storage (never held in memory) and becomes an attachment: bound to a declared `file`
field of the same name, else added to `attachment_ids`. The idempotency hash covers the
form fields and the files' sha256 digests (weftcore.canonical), so a retried upload
replays the first run: its bytes are stored again to learn the digests, CreateRun
answers the stored response instead of starting a second run, and the copies are deleted
(gateway.routes.runs.start_form_run).
"""

import asyncio
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.client_input import check_text, parse_json
from gateway.keys import CONFIG, SERVICES
from gateway.uploads import (
    FormBudget,
    StorageUpload,
    discard_uploads,
    iter_parts,
    open_multipart,
    read_field,
)
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.canonical import multipart_body_hash
from weftcore.errors import InvalidArgument

MAX_FILE_PARTS = 20
_INT = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass
class MultipartBody:
    """A parsed multipart body: form fields in order, file parts as stored attachments."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    # (part name, attachment id, sha256)
    files: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def request_hash(self) -> str:
        return multipart_body_hash(self.fields, [(n, digest) for n, _, digest in self.files])


async def declared_fields(
    request: web.Request, caller: runs_pb2.Caller, workflow_ref: str, *, by_slug: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The workflow's id and declared fields (404 if unknown or outside the allowlist)."""
    wf_request = runs_pb2.GetWorkflowRequest(caller=caller)
    if by_slug:
        wf_request.slug = workflow_ref
    else:
        wf_request.workflow_id = workflow_ref
    workflow = await request.app[SERVICES].runs.GetWorkflow(wf_request, timeout=10)
    fields: list[dict[str, Any]] = json.loads(workflow.fields_json or "[]")
    return workflow.id, fields


URLENCODED = "application/x-www-form-urlencoded"


def is_form(request: web.Request) -> bool:
    """A form body (multipart, or urlencoded as simple HTTP tools send) rather than JSON."""
    return request.content_type.startswith("multipart/") or request.content_type == URLENCODED


async def read_multipart(request: web.Request, principal: auth_pb2.Principal) -> MultipartBody:
    """Reads every part; file parts are uploaded to storage as they stream in (caps: 413,
    unsupported kinds: 415, both from storage). Urlencoded forms carry fields only."""
    if request.content_type == URLENCODED:
        posted = await request.post()  # bounded by client_max_size (the JSON cap)
        return MultipartBody(
            fields=[(k, check_text(v, k)) for k, v in posted.items() if isinstance(v, str)]
        )
    config = request.app[CONFIG]
    budget = FormBudget.of(request, config.max_form_bytes, config.max_json_bytes)
    reader = await open_multipart(request)
    cap = config.max_upload_bytes
    storage = request.app[SERVICES].storage
    body = MultipartBody()
    try:
        async for part in iter_parts(reader, budget):
            name = part.name or ""
            if part.filename is None:
                body.fields.append((name, await read_field(part, budget)))
                continue
            if len(body.files) >= MAX_FILE_PARTS:
                raise InvalidArgument(
                    f"At most {MAX_FILE_PARTS} files per run.", param=name or "file"
                )
            upload = StorageUpload(storage, principal.user_id)
            async with upload:
                await upload.send_part(part, cap, budget)
                attachment = await upload.finish()
            body.files.append((name, attachment.id, attachment.sha256))
    except BaseException:
        # A later part failed (413, a client gone mid-file): nobody will learn the ids
        # of the files already stored, so they go too. Shielded: a cancelled request
        # still removes them.
        stored = [attachment_id for _, attachment_id, _ in body.files]
        await asyncio.shield(discard_uploads(storage, principal.user_id, stored))
        raise
    return body


def coerce(declared: dict[str, Any], raw: str, param: str) -> Any:
    """A form field's text as a value of the declared field's type (None: absent)."""
    kind = declared["type"]
    if kind == "text":
        return raw
    text = raw.strip()
    if text == "":
        return None  # an empty form input means "not given" for typed fields
    if kind == "integer":
        if not _INT.fullmatch(text):
            raise InvalidArgument(f"{param} must be an integer.", param=param)
        return int(text)
    if kind == "number":
        if _INT.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InvalidArgument(f"{param} must be a number.", param=param)
        return number
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise InvalidArgument(f"{param} must be true or false.", param=param)
    if kind == "json":
        try:
            return parse_json(text)
        except InvalidArgument as exc:
            inner = exc.param or ""
            where = param + (inner if inner.startswith("[") or not inner else f".{inner}")
            raise InvalidArgument(
                f"{param} must be valid JSON: {exc.message}", param=where
            ) from None
    if kind == "select":
        options = (declared.get("constraints") or {}).get("options", [])
        for option in options:
            shown = json.dumps(option) if isinstance(option, bool) else str(option)
            if shown == text:
                return option
        return raw  # CreateRun answers 400 naming the options
    return text  # file: an attachment id given as text


@dataclass
class FormRun:
    """What a multipart body asks CreateRun for."""

    input_text: str
    params: dict[str, Any]
    attachment_ids: list[str]
    webhook_url: str


def form_run(
    declared_fields: Iterable[dict[str, Any]],
    body: MultipartBody,
) -> FormRun:
    """Binds form fields and files to the workflow's fields. `input_text`, the run's
    built-in field, is always accepted; a workflow that declares it also gets it as a
    param."""
    declared = {f["name"]: f for f in declared_fields}
    params: dict[str, Any] = {}
    extra_ids: list[str] = []
    input_text = ""
    webhook_url = ""
    seen: set[str] = set()
    for name, raw in body.fields:
        if name in seen and name != "attachment_ids":
            raise InvalidArgument(f"Form field {name!r} was given more than once.", param=name)
        seen.add(name)
        if name in declared:
            value = coerce(declared[name], raw, name)
            if value is not None:
                params[name] = value
            if name == "input_text":
                input_text = raw
        elif name == "input_text":
            input_text = raw
        elif name == "webhook_url":
            webhook_url = raw.strip()
        elif name == "attachment_ids":
            extra_ids.extend(i.strip() for i in raw.split(",") if i.strip())
        else:
            raise InvalidArgument(
                f"Unknown form field {name!r}: the workflow declares no such field.", param=name
            )
    for name, att_id, _ in body.files:
        spec = declared.get(name)
        if spec is not None and spec["type"] == "file" and name not in params:
            params[name] = att_id
        else:
            extra_ids.append(att_id)
    return FormRun(input_text, params, extra_ids, webhook_url)
