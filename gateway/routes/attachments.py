"""Routes for attachments (see spec/API.md): streamed upload and read by owner.

Idempotency-Key on upload: the body's hash needs the file's sha256, known only once the
file has streamed to storage, so the key is claimed (gateway.idempotency.begin) after the
upload. A replay, or a conflict (409 IDEMPOTENCY_IN_FLIGHT / IDEMPOTENCY_KEY_REUSED),
then deletes the attachment just stored: the caller never learns its id, so it would only
be garbage. Refusals before the claim (400/413/415...) are never recorded.
"""

import logging
from typing import Any

from aiohttp import web

from gateway.auth import RUNS_CREATE, require
from gateway.http import json_response
from gateway.idempotency import begin, complete, idempotency_key
from gateway.keys import CONFIG, SERVICES
from gateway.uploads import (
    FormBudget,
    StorageUpload,
    discard_uploads,
    iter_parts,
    open_multipart,
    read_field,
)
from weft.storage.v1 import storage_pb2
from weftcore.canonical import multipart_body_hash
from weftcore.errors import InvalidArgument

log = logging.getLogger(__name__)


def attachment_json(att: storage_pb2.Attachment) -> dict[str, Any]:
    """The public Attachment object (spec/API.md)."""
    data: dict[str, Any] = {
        "id": att.id,
        "original_filename": att.original_filename,
        "kind": att.kind,
        "content_type": att.content_type,
        "byte_size": att.byte_size,
        "sha256": att.sha256,
        "extraction_status": att.extraction_status,
        "row_count": att.row_count,
        "truncated": att.truncated,
        "created_at": att.created_at,
    }
    if att.extraction_status == "failed":
        data["extraction_error"] = att.extraction_error
    return data


async def _discard(request: web.Request, attachment: storage_pb2.Attachment) -> None:
    await discard_uploads(request.app[SERVICES].storage, attachment.owner_user_id, [attachment.id])


def request_hash(fields: dict[str, str], part_name: str, attachment: storage_pb2.Attachment) -> str:
    """The body's canonical hash: form fields, and the file's digest under its part name
    and stored file name (the name is in the answer, so another name is another body)."""
    file_ref = f"{part_name}; filename={attachment.original_filename}"
    return multipart_body_hash(fields.items(), [(file_ref, attachment.sha256)])


async def create_attachment(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    idempotency_key(request)  # a bad header is a 400 before anything is uploaded
    config = request.app[CONFIG]
    cap = config.max_upload_bytes
    # One file, plus room for the form's framing and its (small) text fields.
    budget = FormBudget.of(request, cap + config.max_json_bytes, config.max_json_bytes)
    reader = await open_multipart(request)
    fields: dict[str, str] = {}
    part_name = ""
    upload = StorageUpload(request.app[SERVICES].storage, principal.user_id)
    async with upload:
        # The stream stays open until the body ends, so a second file part can still
        # refuse the whole request (storage then drops the object).
        async for part in iter_parts(reader, budget):
            if part.filename is None:
                fields[part.name or ""] = await read_field(part, budget)
                continue
            if upload.call is not None:
                raise InvalidArgument("Send exactly one file part.", param=part.name or "file")
            part_name = part.name or ""
            await upload.send_part(part, cap, budget)
        if upload.call is None:
            raise InvalidArgument(
                "A file part is required (multipart/form-data with a `file` part).",
                code="MISSING_PARAM",
                param="file",
            )
        attachment = await upload.finish()
    account = principal.user_id  # as CreateRun: keys are scoped to the caller's account
    try:
        claim, replay = await begin(request, account, request_hash(fields, part_name, attachment))
    except BaseException:
        await _discard(request, attachment)  # 409 (in flight, key reused) or runs down
        raise
    if replay is not None:
        await _discard(request, attachment)
        return replay
    response = json_response({"data": attachment_json(attachment)}, status=201)
    try:
        await complete(request, account, claim, response)
    except Exception:
        # The attachment is stored and this answer is right; only replays of it are lost
        # (the key stays in flight until its lease lapses), so do not fail the upload.
        log.warning("could not record the idempotent answer", exc_info=True)
    return response


async def get_attachment(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    attachment = await request.app[SERVICES].storage.GetAttachment(
        storage_pb2.GetAttachmentRequest(
            attachment_id=request.match_info["attachment_id"],
            owner_user_id=principal.user_id,
        ),
        timeout=10,
    )
    return json_response({"data": attachment_json(attachment)})


def setup(app: web.Application) -> None:
    """Registers POST /api/v1/attachments and GET /api/v1/attachments/{id}."""
    app.router.add_post("/api/v1/attachments", create_attachment)
    app.router.add_get("/api/v1/attachments/{attachment_id}", get_attachment)
