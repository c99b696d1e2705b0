"""Streaming multipart uploads: read parts with caps, forward file parts to storage.Upload.

Nothing here buffers a file: `request.multipart()` yields parts as they arrive, each file
part is read in CHUNK_BYTES pieces and written to a gRPC client stream, whose flow
control pushes back to the client. (aiohttp's `client_max_size` only bounds
`request.read()/post()`, never this path.) Reused for multipart run creation.
"""

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from aiohttp import BodyPartReader, ClientPayloadError, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.client_input import check_text, text_problem
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.errors import EARLY_STATUS_METADATA, InvalidArgument, WeftError, from_status_bytes

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024
# Parts of one body (files, fields), whatever their size: each costs a part header parse.
MAX_FORM_PARTS = 64
UPLOAD_TIMEOUT_SECONDS = 600.0
# Once a call has ended, its initial metadata is there or never comes: a short wait.
ANSWER_SECONDS = 5.0


class PayloadTooLarge(WeftError):
    default_code = "PAYLOAD_TOO_LARGE"


def too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload is over the {cap / (1024 * 1024):g} MiB limit.")


@dataclass
class FormBudget:
    """Caps on one multipart body as a whole, counted as it streams (chunked bodies
    too): its bytes on the wire (files included), the bytes of its text fields (those
    are held in memory, so they share the JSON body cap) and its number of parts."""

    content: StreamReader
    max_body_bytes: int
    max_field_bytes: int
    max_parts: int = MAX_FORM_PARTS
    parts: int = 0
    field_bytes: int = 0

    @classmethod
    def of(cls, request: web.Request, max_body_bytes: int, max_field_bytes: int) -> "FormBudget":
        """The budget of the request's body; 413 at once when Content-Length is over."""
        length = request.content_length
        if length is not None and length > max_body_bytes:
            raise _body_too_large(max_body_bytes)
        return cls(request.content, max_body_bytes, max_field_bytes)

    def check_body(self) -> None:
        if self.content.total_bytes > self.max_body_bytes:
            raise _body_too_large(self.max_body_bytes)

    def count_part(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise PayloadTooLarge(f"The form has more than {self.max_parts} parts.")
        self.check_body()

    def count_field_bytes(self, size: int) -> None:
        self.field_bytes += size
        if self.field_bytes > self.max_field_bytes:
            raise PayloadTooLarge(
                f"The form's text fields are over {self.max_field_bytes:,} bytes together."
            )
        self.check_body()


def _body_too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is over the {cap / (1024 * 1024):g} MiB limit.")


async def open_multipart(request: web.Request) -> MultipartReader:
    """The multipart/form-data reader of the request; 415 for any other content type."""
    if request.content_type != "multipart/form-data":
        raise WeftError("Send the file as multipart/form-data.", code="UNSUPPORTED_MEDIA_TYPE")
    try:
        return await request.multipart()
    except (AssertionError, ValueError) as exc:
        raise InvalidArgument(f"Malformed multipart body: {exc}.") from None


async def iter_parts(reader: MultipartReader, budget: FormBudget) -> AsyncIterator[BodyPartReader]:
    """The top-level parts, counted against `budget`; nested multiparts are refused."""
    while True:
        budget.count_part()
        try:
            part = await reader.next()
        except (ValueError, HttpProcessingError) as exc:  # e.g. a part header aiohttp refuses
            raise InvalidArgument(f"Malformed multipart body: {exc}.") from None
        except (ConnectionError, ClientPayloadError):  # the client went away between parts
            raise InvalidArgument(
                "The request body broke off between parts.", code="INVALID_REQUEST"
            ) from None
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise InvalidArgument("Nested multipart bodies are not supported.")
        yield part


def is_file(part: BodyPartReader) -> bool:
    return part.filename is not None


def part_filename(part: BodyPartReader) -> str:
    """The client's file name. Some clients (aiohttp; browsers for quotes and newlines)
    percent-encode it; storage then strips paths and control characters. A name that
    is not text (raw bytes that are not UTF-8, NUL) is a 400."""
    name = urllib.parse.unquote(part.filename or "")
    problem = text_problem(name)
    if problem is not None:
        raise InvalidArgument(
            f"The filename of part {part.name or 'file'!r} {problem}.", param=part.name or "file"
        )
    return name


async def read_chunk(part: BodyPartReader) -> bytes:
    """The part's next bytes (b"" at its end); 400 when the body breaks off mid-part.

    A client that disconnects (or whose framing breaks) is not a server fault: no 500,
    no stack trace in the log. A read timeout is left as it is, for the edge to answer.
    Either way, leaving `async with StorageUpload` cancels the storage stream."""
    try:
        return await part.read_chunk(CHUNK_BYTES)
    except (ConnectionError, ClientPayloadError, HttpProcessingError):
        raise InvalidArgument(
            "The request body broke off before the end of its part.", code="INVALID_REQUEST"
        ) from None


async def read_field(
    part: BodyPartReader, budget: FormBudget, max_bytes: int = MAX_FIELD_BYTES
) -> str:
    """A (non-file) form field as text, at most `max_bytes`, counted against `budget`."""
    data = bytearray()
    while chunk := await read_chunk(part):
        data += chunk
        budget.count_field_bytes(len(chunk))
        if len(data) > max_bytes:
            raise PayloadTooLarge(
                f"Form field {part.name!r} is over {max_bytes:,} bytes.", param=part.name
            )
    try:
        text = data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise InvalidArgument(
            f"Form field {part.name!r} is not valid text.", param=part.name
        ) from None
    return check_text(text, part.name or "")


async def file_chunks(part: BodyPartReader, cap: int, budget: FormBudget) -> AsyncIterator[bytes]:
    """The part's bytes in chunks; 413 as soon as more than `cap` bytes arrived, or the
    whole body is over its budget."""
    size = 0
    while chunk := await read_chunk(part):
        size += len(chunk)
        if size > cap:
            raise too_large(cap)
        budget.check_body()
        yield chunk


@dataclass
class StorageUpload:
    """One storage.Upload client stream. Use as an async context manager: leaving it
    with an exception cancels the stream (storage then removes the partial object).

    Storage may refuse the file mid-stream (413 over the kind's cap, 415): the refusal
    comes at once in initial metadata (storage.proto), and the first write after it
    raises that error, so nothing more is read from the client or sent to storage."""

    stub: storage_pb2_grpc.StorageServiceStub
    owner_user_id: str
    timeout: float = UPLOAD_TIMEOUT_SECONDS
    call: Any = None
    _early: "asyncio.Future[Any] | None" = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> "StorageUpload":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and self.call is not None:
            self.call.cancel()
        if self._early is not None and not self._early.done():
            self._early.cancel()

    def _refusal(self) -> WeftError | None:
        """Storage's early refusal, if it has arrived."""
        early = self._early
        if early is None or not early.done() or early.cancelled() or early.exception():
            return None
        for key, value in early.result() or ():
            if key == EARLY_STATUS_METADATA:
                return from_status_bytes(value)
        return None

    async def _raise_answer(self) -> NoReturn:
        """Raises why the call ended: storage's refusal when it sent one, else the call's
        own status. The latter alone may be INTERNAL when a write raced the refusal."""
        if self._early is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._early), ANSWER_SECONDS)
        refusal = self._refusal()
        if refusal is not None:
            raise refusal
        await self.call  # raises its status (the middleware maps it)
        raise InvalidArgument("The upload ended early.")

    async def _write(self, message: storage_pb2.UploadChunk) -> None:
        refusal = self._refusal()
        if refusal is not None:
            raise refusal
        try:
            await self.call.write(message)
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
            # The call ended (a refusal, storage down): stop writing, say why.
            await self._raise_answer()

    async def send_part(self, part: BodyPartReader, cap: int, budget: FormBudget) -> int:
        """Streams a file part to storage; returns the number of bytes sent."""
        self.call = self.stub.Upload(timeout=self.timeout)
        self._early = asyncio.ensure_future(self.call.initial_metadata())
        header = storage_pb2.UploadHeader(
            owner_user_id=self.owner_user_id,
            filename=part_filename(part),
            content_type=part.headers.get("Content-Type", ""),
        )
        await self._write(storage_pb2.UploadChunk(header=header))
        sent = 0
        async for chunk in file_chunks(part, cap, budget):
            await self._write(storage_pb2.UploadChunk(data=chunk))
            sent += len(chunk)
        return sent

    async def finish(self) -> storage_pb2.Attachment:
        """Closes the stream and answers the stored attachment (or raises its error)."""
        refusal = self._refusal()
        if refusal is not None:
            raise refusal
        with contextlib.suppress(asyncio.InvalidStateError, grpc.aio.UsageError):
            await self.call.done_writing()
        try:
            attachment: storage_pb2.Attachment = await self.call
        except grpc.aio.AioRpcError:
            await self._raise_answer()
        return attachment


async def discard_uploads(
    stub: storage_pb2_grpc.StorageServiceStub, owner_user_id: str, attachment_ids: list[str]
) -> None:
    """Deletes uploads whose ids the caller never learns (a replay or a refused request),
    best effort: a leftover is unreachable garbage, not a leak of anyone's data."""
    for attachment_id in attachment_ids:
        try:
            await stub.DeleteAttachment(
                storage_pb2.DeleteAttachmentRequest(
                    attachment_id=attachment_id, owner_user_id=owner_user_id
                ),
                timeout=10,
            )
        except Exception:
            log.warning("could not delete a duplicate upload", extra={"attachment": attachment_id})
