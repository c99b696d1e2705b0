"""A multipart S3 upload of a spool file while it is still being written."""

import asyncio
import contextlib
import os
from pathlib import Path

from services.storage.s3 import MultipartStore

PART_SIZE = 5 * 1024 * 1024  # the S3 minimum; bigger parts only delay the first send
# Parts of one upload sent at once. Parts are read from the spool file a block at a
# time, so more in flight costs no memory; 3 keeps the S3 server busy while the client
# is still sending (bench/RESULTS.md has the measurements).
PARALLEL_PARTS = 3


class UploadAborted(Exception):
    """A part was due to start after the upload had been aborted."""


class SpooledUpload:
    """Uploads the file growing at `path` to `key`, each part as soon as it is written.

    The writer flushes and calls `grown(length)` whenever `due(length)`, then
    `finish(length)` once the file is complete, or `abort()` if it gives up. A file
    under one part is a single PUT at the end; anything larger is a multipart upload
    whose parts go out in the order written, at most `parallel` at a time.
    """

    def __init__(
        self,
        store: MultipartStore,
        key: str,
        content_type: str,
        path: Path,
        part_size: int = PART_SIZE,
        parallel: int = PARALLEL_PARTS,
    ) -> None:
        self._store = store
        self._key = key
        self._content_type = content_type
        self._path = path
        self._part_size = part_size
        self._slots = asyncio.Semaphore(parallel)
        self._fd = os.open(path, os.O_RDONLY)
        self._scheduled = 0  # bytes handed to parts so far
        self._upload_id: asyncio.Task[str] | None = None
        self._parts: list[asyncio.Task[str]] = []
        self._aborted = False

    def due(self, length: int) -> bool:
        """Whether `length` bytes written complete a part not started yet."""
        return length - self._scheduled >= self._part_size

    def grown(self, length: int) -> None:
        """The first `length` bytes are in the file: starts every part they complete."""
        while self.due(length):
            self._start_part(self._part_size)

    async def finish(self, length: int) -> None:
        """The file is complete at `length` bytes: sends the rest and completes."""
        try:
            if self._upload_id is None:
                await self._store.put_file(self._key, self._path, self._content_type)
            else:
                self.grown(length)
                if length > self._scheduled:
                    self._start_part(length - self._scheduled)
                # Shielded: if this waiter is cancelled, the parts still finish their
                # reads of the spool file before abort() closes it.
                etags = [await asyncio.shield(part) for part in self._parts]
                upload_id = await self._upload_id
                await self._store.complete_multipart(self._key, upload_id, etags)
        except BaseException:
            await self.abort()
            raise
        self._close()

    async def abort(self) -> None:
        """Stops the upload: parts not yet started never start, parts being sent are
        waited for, the multipart upload is aborted. Safe to call more than once."""
        if self._aborted:
            return
        self._aborted = True
        settled = asyncio.gather(*self._parts, return_exceptions=True)
        # Part threads read the spool file: it is closed only once they all ended,
        # even if this waiter is cancelled meanwhile.
        settled.add_done_callback(lambda _: self._close())
        await asyncio.shield(settled)
        if self._upload_id is not None:
            with contextlib.suppress(BaseException):
                await self._store.abort_multipart(self._key, await self._upload_id)

    def _start_part(self, length: int) -> None:
        if self._upload_id is None:
            self._upload_id = asyncio.create_task(
                self._store.start_multipart(self._key, self._content_type)
            )
        number = len(self._parts) + 1
        self._parts.append(asyncio.create_task(self._send(number, self._scheduled, length)))
        self._scheduled += length

    async def _send(self, number: int, offset: int, length: int) -> str:
        assert self._upload_id is not None
        # Shielded: a part that fails must not cancel the upload id the others share.
        upload_id = await asyncio.shield(self._upload_id)
        async with self._slots:
            if self._aborted:
                raise UploadAborted(f"part {number} not sent: the upload was aborted")
            return await self._store.put_part(
                self._key, upload_id, number, self._fd, offset, length
            )

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
