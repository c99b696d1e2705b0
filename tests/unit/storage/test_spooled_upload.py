"""SpooledUpload: parts sent from a growing file, in order, a bounded number at once."""

import asyncio
import os
from pathlib import Path

import pytest

from services.storage.spooled_upload import SpooledUpload, UploadAborted

PART = 1000


class FakeStore:
    """Multipart calls that take a little while, so overlapping parts show."""

    def __init__(self, fail_part: int | None = None) -> None:
        self.fail_part = fail_part
        self.parts: dict[int, bytes] = {}
        self.started: list[int] = []
        self.files: dict[str, bytes] = {}
        self.completed: list[str] | None = None
        self.aborted = False
        self.in_flight = 0
        self.max_in_flight = 0

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.files[key] = path.read_bytes()

    async def start_multipart(self, key: str, content_type: str) -> str:
        await asyncio.sleep(0.01)
        return "upload-1"

    async def put_part(
        self, key: str, upload_id: str, number: int, fd: int, offset: int, length: int
    ) -> str:
        self.started.append(number)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            if number == self.fail_part:
                raise OSError("S3 refused the part")
            self.parts[number] = os.pread(fd, length, offset)
            return f"etag-{number}"
        finally:
            self.in_flight -= 1

    async def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        self.completed = etags

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self.aborted = True


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


async def write_all(upload: SpooledUpload, path: Path, data: bytes, chunk: int = 300) -> None:
    """Writes `data` as the storage service does: append, flush when a part is due."""
    with path.open("ab") as file:
        for i in range(0, len(data), chunk):
            file.write(data[i : i + chunk])
            written = min(len(data), i + chunk)
            if upload.due(written):
                file.flush()
                upload.grown(written)
            await asyncio.sleep(0)


@pytest.mark.parametrize("parallel", [1, 2, 3])
async def test_parts_go_out_while_the_file_grows_in_order_and_bounded(
    tmp_path: Path, parallel: int
) -> None:
    path = tmp_path / "spool"
    path.touch()
    store = FakeStore()
    upload = SpooledUpload(store, "k", "text/csv", path, part_size=PART, parallel=parallel)
    data = payload(7 * PART + 123)
    await write_all(upload, path, data)
    await asyncio.sleep(0.05)
    assert store.started, "no part went out before the file was complete"
    await upload.finish(len(data))
    assert store.completed == [f"etag-{n}" for n in range(1, 9)]
    assert b"".join(store.parts[n] for n in range(1, 9)) == data
    assert store.max_in_flight == parallel
    assert not store.aborted and not store.files


async def test_an_exact_multiple_of_the_part_size_has_no_empty_last_part(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.touch()
    store = FakeStore()
    upload = SpooledUpload(store, "k", "text/csv", path, part_size=PART)
    data = payload(3 * PART)
    await write_all(upload, path, data)
    await upload.finish(len(data))
    assert store.completed == ["etag-1", "etag-2", "etag-3"]
    assert [len(store.parts[n]) for n in (1, 2, 3)] == [PART] * 3


@pytest.mark.parametrize("size", [0, PART - 1])
async def test_a_file_under_one_part_is_a_single_put(tmp_path: Path, size: int) -> None:
    path = tmp_path / "spool"
    path.touch()
    store = FakeStore()
    upload = SpooledUpload(store, "k", "text/csv", path, part_size=PART)
    await write_all(upload, path, payload(size))
    await upload.finish(size)
    assert store.files == {"k": payload(size)}
    assert store.completed is None and not store.started


async def test_a_failed_part_aborts_and_no_later_part_starts(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.touch()
    store = FakeStore(fail_part=2)
    upload = SpooledUpload(store, "k", "text/csv", path, part_size=PART, parallel=2)
    data = payload(10 * PART)
    await write_all(upload, path, data)
    with pytest.raises(OSError, match="refused"):
        await upload.finish(len(data))
    assert store.aborted and store.completed is None
    assert store.in_flight == 0  # nothing still reading the spool after the abort
    assert max(store.started) < 10


async def test_abort_while_writing_stops_queued_parts(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    path.touch()
    store = FakeStore()
    upload = SpooledUpload(store, "k", "text/csv", path, part_size=PART, parallel=1)
    await write_all(upload, path, payload(6 * PART))  # six parts due, one at a time
    await upload.abort()
    await upload.abort()  # a second abort is harmless
    assert store.aborted and store.in_flight == 0
    assert len(store.started) < 6
    with pytest.raises(UploadAborted):
        await upload._parts[-1]
