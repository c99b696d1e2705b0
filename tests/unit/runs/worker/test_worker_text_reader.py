"""The worker reads attachments' text one attachment per ReadText call, so no reply
grows with the number of attachments (20 large texts passed the 8 MiB reply limit)."""

from typing import Any

import grpc
import pytest

from services.runs.worker.clients import StorageTextReader
from services.runs.worker.model import TransientError
from weft.storage.v1 import storage_pb2


class FakeStorage:
    def __init__(self, fail: grpc.StatusCode | None = None) -> None:
        self.requests: list[storage_pb2.ReadTextRequest] = []
        self.fail = fail

    async def ReadText(
        self, request: storage_pb2.ReadTextRequest, timeout: float
    ) -> storage_pb2.ReadTextResponse:
        self.requests.append(request)
        if self.fail is not None:
            raise grpc.aio.AioRpcError(self.fail, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")
        return storage_pb2.ReadTextResponse(
            items=[
                storage_pb2.AttachmentText(
                    attachment=storage_pb2.Attachment(
                        id=i, original_filename=f"{i}.txt", kind="txt"
                    ),
                    text=f"text of {i}",
                    truncated=i == "att_2",
                )
                for i in request.attachment_ids
            ]
        )


def _reader(storage: FakeStorage) -> StorageTextReader:
    reader = StorageTextReader.__new__(StorageTextReader)
    reader._stub = storage  # type: ignore[assignment]
    reader._max_chars = 200_000
    return reader


async def test_each_attachment_is_read_in_its_own_bounded_call() -> None:
    storage = FakeStorage()
    ids = [f"att_{n}" for n in range(20)]
    texts = await _reader(storage)("usr_a", [*ids, "att_3"])
    assert [t.id for t in texts] == ids  # in order, each once
    assert [list(r.attachment_ids) for r in storage.requests] == [[i] for i in ids]
    assert {(r.owner_user_id, r.max_chars) for r in storage.requests} == {("usr_a", 200_000)}
    assert texts[2].text == "text of att_2" and texts[2].truncated
    assert texts[2].filename == "att_2.txt" and texts[2].kind == "txt"


@pytest.mark.parametrize(
    ("code", "error"),
    [(grpc.StatusCode.UNAVAILABLE, TransientError), (grpc.StatusCode.NOT_FOUND, LookupError)],
)
async def test_failures_keep_their_meaning(code: grpc.StatusCode, error: Any) -> None:
    with pytest.raises(error):
        await _reader(FakeStorage(fail=code))("usr_a", ["att_1"])
