"""The gateway's storage.Upload stream (gateway/uploads.py) against a scripted call: a
mid-stream refusal is raised as storage sent it and stops the copy; a body that cannot
be read cancels the call, so storage drops the partial upload."""

import asyncio
from collections.abc import Generator
from typing import Any
from unittest import mock

import grpc
import pytest
from aiohttp import ClientPayloadError, StreamReader

from gateway.uploads import CHUNK_BYTES, FormBudget, StorageUpload
from services.storage.errors import PayloadTooLarge
from weftcore.errors import EARLY_STATUS_METADATA, WeftError, status_bytes

REFUSAL = PayloadTooLarge("The file is over the 20 MiB limit for CSV files.")


def _internal() -> grpc.aio.AioRpcError:
    # What grpc aio reports when a write races the end of the call (grpc/grpc#36066).
    return grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "from Core"
    )


class FakeCall:
    """A storage.Upload call that refuses after `refuse_after` writes, the way storage
    does: the refusal in initial metadata first; writes then fail with `write_error`."""

    def __init__(self, refuse_after: int | None, write_error: BaseException | None) -> None:
        self.refuse_after = refuse_after
        self.write_error = write_error
        self.writes: list[Any] = []
        self.cancelled = False
        self._metadata: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def write(self, message: Any) -> None:
        await asyncio.sleep(0)  # a real write always waits for the transport
        if self.refuse_after is not None and len(self.writes) >= self.refuse_after:
            if not self._metadata.done():
                refusal = grpc.aio.Metadata((EARLY_STATUS_METADATA, status_bytes(REFUSAL)))
                self._metadata.set_result(refusal)
                if self.write_error is not None:
                    raise self.write_error
        self.writes.append(message)

    async def initial_metadata(self) -> Any:
        return await self._metadata

    async def done_writing(self) -> None:
        return None

    def cancel(self) -> bool:
        self.cancelled = True
        if not self._metadata.done():
            self._metadata.set_result(grpc.aio.Metadata())
        return True

    def __await__(self) -> Generator[Any, None, Any]:
        yield from asyncio.sleep(0).__await__()
        if not self._metadata.done():  # an ended call has its initial metadata, if empty
            self._metadata.set_result(grpc.aio.Metadata())
        raise _internal()


class FakeStub:
    def __init__(self, call: FakeCall) -> None:
        self.call = call

    def Upload(self, timeout: float) -> FakeCall:
        return self.call


class FakePart:
    """A file part of `chunks` chunks; raises `error` instead of chunk `fail_at`."""

    filename = "big.csv"
    name = "file"
    headers: dict[str, str] = {}

    def __init__(self, chunks: int, fail_at: int | None = None, error: Any = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.error = error
        self.read = 0

    async def read_chunk(self, size: int = CHUNK_BYTES) -> bytes:
        await asyncio.sleep(0)
        if self.read == self.fail_at:
            raise self.error
        if self.read == self.chunks:
            return b""
        self.read += 1
        return b"x" * size


def _unbounded() -> FormBudget:
    content = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    return FormBudget(content, max_body_bytes=10**12, max_field_bytes=10**12)


async def _send(call: FakeCall, part: FakePart) -> StorageUpload:
    upload = StorageUpload(FakeStub(call), "usr_a")  # type: ignore[arg-type]
    async with upload:
        await upload.send_part(part, cap=10**9, budget=_unbounded())  # type: ignore[arg-type]
        await upload.finish()
    return upload


@pytest.mark.parametrize(
    "write_error",
    [asyncio.InvalidStateError("RPC already finished."), _internal(), None],
    ids=["write-after-end", "write-raced-end", "storage-drains"],
)
async def test_a_refusal_mid_stream_is_raised_as_storage_sent_it_and_stops_the_copy(
    write_error: BaseException | None,
) -> None:
    call = FakeCall(refuse_after=3, write_error=write_error)
    part = FakePart(chunks=40)
    with pytest.raises(WeftError) as info:
        await _send(call, part)
    assert (info.value.code, info.value.message) == (REFUSAL.code, REFUSAL.message)
    assert len(call.writes) <= 4  # the header and chunks up to the refusal, no more
    assert part.read <= 4  # nor is the rest of the client's file read
    assert call.cancelled


async def test_a_call_that_ends_without_a_refusal_raises_its_own_status() -> None:
    call = FakeCall(refuse_after=None, write_error=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _send(call, FakePart(chunks=2))
    assert info.value.code() == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (TimeoutError(), TimeoutError),  # a body read timeout: the edge answers it
        (asyncio.CancelledError(), asyncio.CancelledError),  # the handler cancelled
        # The client went away, or its body broke off: a 400, not a 500 with a trace.
        (ConnectionResetError("Connection lost"), WeftError),
        (ClientPayloadError("Response payload is not completed"), WeftError),
    ],
    ids=["timeout", "cancelled", "disconnect", "truncated"],
)
async def test_a_body_that_cannot_be_read_cancels_the_storage_call(
    error: BaseException, raised: type[BaseException]
) -> None:
    call = FakeCall(refuse_after=None, write_error=None)
    with pytest.raises(raised) as info:
        await _send(call, FakePart(chunks=40, fail_at=5, error=error))
    assert call.cancelled
    assert len(call.writes) == 6  # the header and the five chunks read
    if isinstance(info.value, WeftError):
        assert info.value.code == "INVALID_REQUEST"
