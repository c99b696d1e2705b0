"""Routes for attachments (see spec/API.md): streamed upload and read by owner."""

from typing import Any

from aiohttp import web

from gateway.auth import RUNS_CREATE, require
from gateway.http import json_response
from gateway.keys import CONFIG, SERVICES
from gateway.uploads import (
    StorageUpload,
    check_declared_length,
    iter_parts,
    open_multipart,
    read_field,
)
from weft.storage.v1 import storage_pb2
from weftcore.errors import InvalidArgument


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


async def create_attachment(request: web.Request) -> web.Response:
    principal = await require(request, RUNS_CREATE)
    config = request.app[CONFIG]
    cap = config.max_upload_bytes
    check_declared_length(request, cap)
    reader = await open_multipart(request)
    fields: dict[str, str] = {}
    upload = StorageUpload(request.app[SERVICES].storage, principal.user_id)
    async with upload:
        # The stream stays open until the body ends, so a second file part can still
        # refuse the whole request (storage then drops the object).
        async for part in iter_parts(reader):
            if part.filename is None:
                fields[part.name or ""] = await read_field(part)
                continue
            if upload.call is not None:
                raise InvalidArgument("Send exactly one file part.", param=part.name or "file")
            await upload.send_part(part, cap)
        if upload.call is None:
            raise InvalidArgument(
                "A file part is required (multipart/form-data with a `file` part).",
                code="MISSING_PARAM",
                param="file",
            )
        attachment = await upload.finish()
    return json_response({"data": attachment_json(attachment)}, status=201)


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
