"""gRPC surface of the storage service: wiring and the servicer (gRPC <-> domain)."""

import asyncio
import contextlib
import ctypes
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from services.storage.config import StorageConfig
from services.storage.errors import PayloadTooLarge
from services.storage.extract.pool import ExtractionPool
from services.storage.extract.sandbox import Sandbox
from services.storage.repository import AttachmentRecord, PgAttachmentRepository
from services.storage.s3 import MinioStore
from services.storage.service import StorageService, UploadHeader
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.errors import EARLY_STATUS_METADATA, InvalidArgument, WeftError, status_bytes
from weftcore.grpc_server import MAX_MESSAGE_BYTES, GrpcServer
from weftcore.ids import iso
from weftcore.service import Check

log = logging.getLogger(__name__)

GRPC_SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


def to_proto(record: AttachmentRecord) -> storage_pb2.Attachment:
    return storage_pb2.Attachment(
        id=record.id,
        owner_user_id=record.owner_user_id,
        original_filename=record.original_filename,
        kind=record.kind,
        content_type=record.content_type,
        byte_size=record.byte_size,
        sha256=record.sha256,
        extraction_status=record.extraction_status,
        extraction_error=record.extraction_error or "",
        row_count=record.row_count,
        truncated=record.truncated,
        created_at=iso(record.created_at),
        metadata_json=json.dumps(record.metadata, separators=(",", ":")),
        text_tokens=record.text_tokens,
    )


# How long a refused upload keeps reading what the client still sends (see _refuse).
DRAIN_SECONDS = 10.0


class _UploadBody:
    """The data messages after the header; knows whether the client finished sending."""

    def __init__(self, messages: AsyncIterator[Any]) -> None:
        self._messages = messages
        self.ended = False

    async def chunks(self) -> AsyncIterator[bytes]:
        async for message in self._messages:
            if message.WhichOneof("part") != "data":
                raise InvalidArgument("Only the first upload message may carry the header.")
            if message.data:
                yield message.data
        self.ended = True

    async def drain(self) -> None:
        """Reads and drops the rest, until the client stops or DRAIN_SECONDS pass."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for _ in self._messages:
                    pass


async def _refuse(context: Any, err: WeftError, body: _UploadBody) -> None:
    """Answers `err` at once in initial metadata, then keeps reading until the client
    stops: ending the call while one of its writes is in flight would make grpc aio
    report INTERNAL to it instead of `err` (grpc/grpc#36066), a 500 for a 413."""
    try:
        await context.send_initial_metadata(((EARLY_STATUS_METADATA, status_bytes(err)),))
    except Exception:  # the call is already over (the client left): nobody to tell
        return
    await body.drain()


class StorageServiceServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, service: StorageService) -> None:
        self.service = service

    async def Upload(
        self, request_iterator: AsyncIterator[storage_pb2.UploadChunk], context: Any
    ) -> storage_pb2.Attachment:
        messages = request_iterator.__aiter__()
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument("The upload stream is empty.") from None
        if first.WhichOneof("part") != "header":
            raise InvalidArgument("The first upload message must carry the header.")
        h = first.header
        header = UploadHeader(h.owner_user_id, h.filename, h.content_type, h.declared_size)
        body = _UploadBody(messages)
        try:
            record = await self.service.upload(header, body.chunks())
        except WeftError as err:
            if not body.ended:  # refused mid-stream (413, 415...): the client still sends
                await _refuse(context, err, body)
            raise
        return to_proto(record)

    async def GetAttachment(
        self, request: storage_pb2.GetAttachmentRequest, context: Any
    ) -> storage_pb2.Attachment:
        return to_proto(await self.service.get(request.attachment_id, request.owner_user_id))

    async def DeleteAttachment(
        self, request: storage_pb2.DeleteAttachmentRequest, context: Any
    ) -> storage_pb2.DeleteAttachmentResponse:
        await self.service.delete(request.attachment_id, request.owner_user_id)
        return storage_pb2.DeleteAttachmentResponse()

    async def ReadText(
        self, request: storage_pb2.ReadTextRequest, context: Any
    ) -> storage_pb2.ReadTextResponse:
        texts = await self.service.read_text(
            list(request.attachment_ids), request.owner_user_id, request.max_chars
        )
        reply = storage_pb2.ReadTextResponse(
            items=[
                storage_pb2.AttachmentText(
                    attachment=to_proto(t.attachment), text=t.text, truncated=t.truncated
                )
                for t in texts
            ]
        )
        if reply.ByteSize() > MAX_MESSAGE_BYTES:
            # Sending it would fail in the transport with a status that says nothing.
            raise PayloadTooLarge(
                f"The texts asked for are {reply.ByteSize():,} bytes, over the "
                f"{MAX_MESSAGE_BYTES:,}-byte reply limit: ask for fewer attachments per "
                "call, or fewer characters of each."
            )
        return reply


_M_MMAP_THRESHOLD = -3  # mallopt parameter, glibc malloc.h


def pin_mmap_threshold(threshold: int = 1024 * 1024) -> None:
    """Keep glibc serving big buffers (S3 parts, extracted text) with mmap.

    glibc raises its mmap threshold after the first large free, so later 5 MiB part
    buffers would come from per-thread arenas that keep their pages: the first big
    upload would raise RSS for good. A fixed threshold turns that adjustment off.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, threshold)


async def _ensure_bucket(store: MinioStore, attempts: int = 20) -> None:
    # S3 may still be starting next to us; give it a few seconds before failing.
    for attempt in range(attempts):
        try:
            await store.ensure_bucket()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    storage_config = StorageConfig.from_env()
    pin_mmap_threshold()
    pool = await create_pool(config.database_url, "storage")
    stack.push_async_callback(pool.close)
    store = MinioStore(storage_config)
    stack.callback(store.close)
    await _ensure_bucket(store)
    sandbox = Sandbox(
        storage_config.extraction_timeout_seconds, storage_config.extraction_memory_bytes
    )
    stack.callback(sandbox.close)
    extractions = ExtractionPool(
        sandbox.run,
        storage_config.extraction_workers,
        storage_config.extraction_per_account,
        storage_config.extraction_queue_seconds,
    )
    stack.callback(extractions.close)
    service = StorageService(storage_config, store, PgAttachmentRepository(pool), extractions)
    storage_pb2_grpc.add_StorageServiceServicer_to_server(
        StorageServiceServicer(service), server.server
    )

    async def database() -> bool:
        return await ping(pool)

    return {"database": database, "s3": store.ping}
