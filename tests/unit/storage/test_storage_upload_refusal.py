"""storage.Upload refusing mid-stream: the refusal goes out at once in initial metadata,
then the rest of the client's stream is read, so the call does not end under a write."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.storage.errors import PayloadTooLarge
from services.storage.server import StorageServiceServicer
from services.storage.service import UploadHeader
from weft.storage.v1 import storage_pb2
from weftcore.errors import EARLY_STATUS_METADATA, from_status_bytes

REFUSAL = PayloadTooLarge("The file is over the 20 MiB limit for CSV files.")


class RefusingService:
    """Reads `take` chunks, then refuses the upload (as the table cap does)."""

    def __init__(self, take: int) -> None:
        self.take = take

    async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes]) -> Any:
        taken = 0
        async for _ in chunks:
            taken += 1
            if taken == self.take:
                raise REFUSAL
        raise AssertionError("the service read the whole stream")


class Context:
    def __init__(self) -> None:
        self.metadata: list[Any] = []

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.metadata.append(metadata)


class Client:
    """The client's messages: a header, then `chunks` data messages."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.sent = 0

    async def messages(self) -> AsyncIterator[storage_pb2.UploadChunk]:
        yield storage_pb2.UploadChunk(header=storage_pb2.UploadHeader(owner_user_id="usr_a"))
        for _ in range(self.chunks):
            self.sent += 1
            yield storage_pb2.UploadChunk(data=b"x" * 10)


def _servicer(take: int) -> StorageServiceServicer:
    return StorageServiceServicer(RefusingService(take))  # type: ignore[arg-type]


async def test_a_refusal_mid_stream_is_sent_first_and_the_rest_is_drained() -> None:
    client, context = Client(chunks=50), Context()
    with pytest.raises(PayloadTooLarge):
        await _servicer(take=3).Upload(client.messages(), context)
    [[(key, value)]] = context.metadata
    assert key == EARLY_STATUS_METADATA
    refusal = from_status_bytes(value)
    assert (refusal.code, refusal.message) == (REFUSAL.code, REFUSAL.message)
    assert client.sent == 50  # read to the client's end, not cut under its writes


async def test_a_refusal_after_the_last_chunk_needs_no_early_answer() -> None:
    client, context = Client(chunks=3), Context()

    class RefusesAtTheEnd(RefusingService):
        async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes]) -> Any:
            async for _ in chunks:
                pass
            raise REFUSAL  # e.g. S3 failing on completion: the client already stopped

    servicer = StorageServiceServicer(RefusesAtTheEnd(0))  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        await servicer.Upload(client.messages(), context)
    assert context.metadata == []
