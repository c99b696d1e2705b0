"""The upload flow with fakes behind ObjectStore / AttachmentRepository (no network)."""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.storage.config import StorageConfig
from services.storage.errors import PayloadTooLarge, UnsupportedMediaType
from services.storage.extract import ExtractResult, Limits, extract_to_file
from services.storage.repository import AttachmentRecord
from services.storage.service import StorageService, UploadHeader, truncate_text
from tests.support import storage_files as files
from weftcore.errors import NotFound, Unavailable
from weftcore.ids import utcnow
from weftcore.tokens import estimate_tokens

OWNER = "usr_owner"
CONFIG = StorageConfig.from_env(
    {
        "WEFT_S3_ENDPOINT": "http://127.0.0.1:1",
        "WEFT_S3_ACCESS_KEY": "k",
        "WEFT_S3_SECRET_KEY": "s",
        "WEFT_MAX_UPLOAD_BYTES": str(1024 * 1024),
        "WEFT_MAX_TABLE_UPLOAD_BYTES": str(300 * 1024),
    }
)


class FakeStore:
    def __init__(self, fail_put: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.removed: list[str] = []
        self.fail_put = fail_put
        self.uploads: dict[str, list[bytes]] = {}

    async def ensure_bucket(self) -> None:
        return None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        if self.fail_put:
            raise OSError("S3 is down")
        self.objects[key] = path.read_bytes()

    async def start_multipart(self, key: str, content_type: str) -> str:
        self.uploads[key] = []
        return key

    async def put_part(
        self, key: str, upload_id: str, number: int, fd: int, offset: int, length: int
    ) -> str:
        if self.fail_put:
            raise OSError("S3 is down")
        self.uploads[upload_id].append(os.pread(fd, length, offset))
        return f"etag-{number}"

    async def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        self.objects[key] = b"".join(self.uploads.pop(upload_id))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id)

    async def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    async def remove(self, key: str) -> None:
        self.removed.append(key)
        self.objects.pop(key, None)

    async def ping(self) -> bool:
        return True


class FakeRepo:
    def __init__(self) -> None:
        self.rows: dict[str, AttachmentRecord] = {}

    async def insert(self, record: AttachmentRecord) -> AttachmentRecord:
        record.created_at = utcnow()
        self.rows[record.id] = record
        return record

    async def get(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None:
        row = self.rows.get(attachment_id)
        return row if row and row.owner_user_id == owner_user_id else None

    async def get_many(self, ids: list[str], owner_user_id: str) -> list[AttachmentRecord]:
        return [r for i in ids if (r := await self.get(i, owner_user_id))]

    async def delete(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None:
        row = await self.get(attachment_id, owner_user_id)
        return self.rows.pop(attachment_id) if row else None


class InlineExtractor:
    async def extract(
        self, account: str, path: Path, kind: str, limits: Limits, text_path: Path
    ) -> ExtractResult:
        return extract_to_file(path, kind, limits, text_path)


def _service(store: FakeStore | None = None) -> tuple[StorageService, FakeStore, FakeRepo]:
    store = store or FakeStore()
    repo = FakeRepo()
    return StorageService(CONFIG, store, repo, InlineExtractor()), store, repo


async def _chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_upload_stores_object_text_and_metadata() -> None:
    service, store, repo = _service()
    data = files.csv_bytes(100)
    record = await service.upload(UploadHeader(OWNER, "../../sales\x00.csv"), _chunks(data))
    assert record.id.startswith("att_")
    assert record.original_filename == "sales.csv"
    assert (record.kind, record.content_type) == ("csv", "text/csv")
    assert record.byte_size == len(data)
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert (record.extraction_status, record.row_count, record.truncated) == (
        "extracted",
        101,
        False,
    )
    assert store.objects[record.object_key] == data
    assert record.text_key is not None
    assert store.objects[record.text_key].decode().startswith("id,name,amount\n1,name 1")
    assert repo.rows[record.id] is record


async def test_upload_keeps_the_texts_token_estimate() -> None:
    service, store, _ = _service()
    record = await service.upload(
        UploadHeader(OWNER, "a.txt"), _chunks("日本語 text\n".encode() * 999)
    )
    assert record.text_key is not None
    assert record.text_tokens == estimate_tokens(store.objects[record.text_key].decode()) > 3000
    broken = await service.upload(UploadHeader(OWNER, "b.pdf"), _chunks(b"%PDF-1.4\nbroken"))
    assert broken.text_tokens == 0


async def test_declared_size_over_cap_is_refused_before_reading() -> None:
    service, store, _ = _service()
    read = False

    async def never() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b"x"

    header = UploadHeader(OWNER, "a.pdf", declared_size=2 * 1024 * 1024)
    with pytest.raises(PayloadTooLarge):
        await service.upload(header, never())
    assert not read and not store.objects


async def test_table_cap_applies_mid_stream_and_removes_the_partial_object() -> None:
    service, store, repo = _service()
    data = files.csv_bytes(20_000)  # ~ 450 KB: over the 300 KiB table cap
    assert len(data) > 300 * 1024
    with pytest.raises(PayloadTooLarge) as info:
        await service.upload(UploadHeader(OWNER, "big.csv"), _chunks(data))
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    assert "300 KiB limit for CSV files" in info.value.message
    assert not store.objects and store.removed and not repo.rows


async def test_same_size_is_fine_for_a_non_table_kind() -> None:
    service, _, _ = _service()
    data = b"line of text\n" * 30_000  # ~ 390 KB, under the 1 MiB general cap
    record = await service.upload(UploadHeader(OWNER, "notes.txt"), _chunks(data))
    assert record.kind == "txt" and record.byte_size == len(data)


async def test_unsupported_content_is_refused_before_storing() -> None:
    service, store, _ = _service()
    with pytest.raises(UnsupportedMediaType):
        await service.upload(UploadHeader(OWNER, "x.csv"), _chunks(bytes(range(256)) * 64))
    assert not store.objects


async def test_s3_failure_is_unavailable_and_cleans_up() -> None:
    service, store, repo = _service(FakeStore(fail_put=True))
    with pytest.raises(Unavailable):
        await service.upload(UploadHeader(OWNER, "a.txt"), _chunks(b"hello " * 100_000))
    assert store.removed and not repo.rows


async def test_broken_file_is_stored_with_failed_status() -> None:
    service, _, _ = _service()
    record = await service.upload(UploadHeader(OWNER, "a.pdf"), _chunks(b"%PDF-1.4\nbroken"))
    assert record.extraction_status == "failed" and record.extraction_error
    assert record.text_key is None


async def test_get_and_read_text_are_scoped_to_the_owner() -> None:
    service, _, _ = _service()
    a = await service.upload(UploadHeader(OWNER, "a.txt"), _chunks(b"alpha " * 100))
    b = await service.upload(UploadHeader(OWNER, "b.md"), _chunks(b"# beta"))
    assert (await service.get(a.id, OWNER)).id == a.id
    with pytest.raises(NotFound):
        await service.get(a.id, "usr_other")
    with pytest.raises(NotFound):
        await service.read_text([a.id], "usr_other", 0)
    texts = await service.read_text([b.id, a.id, b.id], OWNER, 100)
    assert [t.attachment.id for t in texts] == [b.id, a.id]
    assert texts[0].text == "# beta" and not texts[0].truncated
    assert texts[1].truncated and len(texts[1].text) <= 100 and "Truncated" in texts[1].text


async def test_delete_is_scoped_to_the_owner_and_removes_the_objects() -> None:
    service, store, repo = _service()
    record = await service.upload(UploadHeader(OWNER, "a.csv"), _chunks(files.csv_bytes(5)))
    with pytest.raises(NotFound):
        await service.delete(record.id, "usr_someone_else")
    assert record.id in repo.rows and record.object_key in store.objects
    await service.delete(record.id, OWNER)
    assert record.id not in repo.rows
    assert record.object_key not in store.objects and record.text_key not in store.objects
    with pytest.raises(NotFound):
        await service.get(record.id, OWNER)


def test_truncate_text_stays_within_the_budget() -> None:
    text, cut = truncate_text("y" * 10_000, 500)
    assert cut and len(text) <= 500 and "of 10,000 characters" in text
    assert truncate_text("short", 500) == ("short", False)
    assert truncate_text("z" * 900, 0) == ("z" * 900, False)


class ThreadedPutStore(FakeStore):
    """Text PUTs run on like the SDK's executor threads do: cancelling the caller does
    not stop them, and they land once `landing` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.text_put_started = asyncio.Event()
        self.landing = asyncio.Event()
        self.in_flight: list[asyncio.Future[None]] = []

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        if not key.endswith("/text.txt"):
            return await super().put_file(key, path, content_type)
        data = path.read_bytes()
        self.text_put_started.set()

        async def thread() -> None:
            await self.landing.wait()
            self.objects[key] = data

        work = asyncio.ensure_future(thread())
        self.in_flight.append(work)
        await asyncio.shield(work)


async def test_an_upload_cancelled_while_storing_its_text_leaves_no_object() -> None:
    store = ThreadedPutStore()
    service, _, repo = _service(store)
    upload = asyncio.create_task(
        service.upload(UploadHeader(OWNER, "a.txt"), _chunks(b"some text " * 1000))
    )
    await asyncio.wait_for(store.text_put_started.wait(), 10)
    upload.cancel()  # e.g. the gateway gave up on the call
    await asyncio.wait([upload], timeout=0.2)  # its cleanup runs as far as it will alone
    store.landing.set()  # the PUT under way lands after the cancel...
    with pytest.raises(asyncio.CancelledError):
        await upload
    await asyncio.gather(*store.in_flight)
    assert store.objects == {} and not repo.rows  # ...and is removed all the same
