"""MinioStore's file-backed request bodies and their signing, against a fake SDK client."""

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from minio.datatypes import Part

from services.storage.config import StorageConfig
from services.storage.s3 import FileSection, MinioStore, UnsignedPayloadMinio

CONFIG = StorageConfig.from_env(
    {
        "WEFT_S3_ENDPOINT": "127.0.0.1:1",
        "WEFT_S3_ACCESS_KEY": "k",
        "WEFT_S3_SECRET_KEY": "secret",
        "WEFT_S3_SECURE": "false",
    }
)


class FakeSDK:
    """Records the private SDK calls MinioStore makes, reading bodies as urllib3 would."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.puts: dict[str, tuple[bytes, Any]] = {}
        self.completed: list[Part] | None = None
        self.aborted: str | None = None

    def _put_object(self, bucket: str, key: str, data: Any, headers: Any) -> None:
        body = data if isinstance(data, bytes) else b"".join(iter(lambda: data.read(1000), b""))
        self.puts[key] = (body, headers)

    def _create_multipart_upload(self, bucket: str, key: str, headers: Any) -> str:
        return "upload-1"

    def _upload_part(
        self, bucket: str, key: str, data: Any, headers: Any, upload_id: str, number: int
    ) -> str:
        assert upload_id == "upload-1"
        self.parts[number] = data.read()
        return f"etag-{number}"

    def _complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[Part]
    ) -> None:
        self.completed = parts

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted = upload_id


@pytest.fixture
def store() -> Any:
    made = MinioStore(CONFIG)
    made.client = FakeSDK()  # type: ignore[assignment]
    yield made
    made.close()


@pytest.fixture
def spool(tmp_path: Path) -> Any:
    path = tmp_path / "spool"
    path.write_bytes(bytes(i % 251 for i in range(100_000)))
    fd = os.open(path, os.O_RDONLY)
    yield path, fd
    os.close(fd)


def test_a_file_section_reads_its_range_and_rewinds(spool: tuple[Path, int]) -> None:
    path, fd = spool
    data = path.read_bytes()
    section = FileSection(fd, 1_000, 50_000)
    assert len(section) == 50_000
    assert section.read(10) == data[1_000:1_010]
    assert section.read() == data[1_010:51_000]
    assert section.read(5) == b"" and section.tell() == 50_000
    section.seek(0)  # what urllib3 does before retrying a request
    assert section.read(70_000) == data[1_000:51_000]
    section.seek(-3, os.SEEK_END)
    assert section.read() == data[50_997:51_000]


def test_a_file_section_past_the_end_of_the_file_is_an_error(spool: tuple[Path, int]) -> None:
    _, fd = spool
    with pytest.raises(OSError, match="ended 1000 bytes early"):
        FileSection(fd, 99_000, 2_000).read()


async def test_parts_are_read_from_the_file_and_completed_in_order(
    store: MinioStore, spool: tuple[Path, int]
) -> None:
    path, fd = spool
    data = path.read_bytes()
    upload_id = await store.start_multipart("k", "text/csv")
    etags = [
        await store.put_part("k", upload_id, 1, fd, 0, 60_000),
        await store.put_part("k", upload_id, 2, fd, 60_000, 40_000),
    ]
    await store.complete_multipart("k", upload_id, etags)
    sdk: FakeSDK = store.client  # type: ignore[assignment]
    assert sdk.parts == {1: data[:60_000], 2: data[60_000:]}
    assert [(p.part_number, p.etag) for p in sdk.completed or []] == [
        (1, "etag-1"),
        (2, "etag-2"),
    ]
    await store.abort_multipart("k", upload_id)
    assert sdk.aborted == "upload-1"


async def test_put_file_streams_the_file_and_sends_an_empty_one_as_empty_bytes(
    store: MinioStore, spool: tuple[Path, int], tmp_path: Path
) -> None:
    path, _ = spool
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    await store.put_file("full", path, "text/plain")
    await store.put_file("empty", empty, "text/plain")
    sdk: FakeSDK = store.client  # type: ignore[assignment]
    assert sdk.puts["full"] == (path.read_bytes(), {"Content-Type": "text/plain"})
    assert sdk.puts["empty"][0] == b""


def test_bodies_are_signed_unsigned_payload_over_plain_http(spool: tuple[Path, int]) -> None:
    _, fd = spool
    client = UnsignedPayloadMinio("127.0.0.1:1", access_key="k", secret_key="s", secure=False)
    creds = client._provider.retrieve()  # type: ignore[union-attr]
    headers, _ = client._build_headers("127.0.0.1:1", {}, b"x" * 1000, creds)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["Content-Length"] == "1000"
    # A file section is never read to sign it: only its length is used.
    section = FileSection(fd, 0, 4096)
    headers, _ = client._build_headers("127.0.0.1:1", {}, section, creds)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["Content-Length"] == "4096" and section.tell() == 0
    # Requests without a body keep the SDK's own (empty-body) hash.
    headers, _ = client._build_headers("127.0.0.1:1", {}, None, creds)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
