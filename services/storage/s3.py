"""Object storage behind a small interface, with a minio-SDK implementation.

The SDK is synchronous: uploads run in a dedicated thread pool and read from a
`ChunkPipe`, a bounded hand-off from the event loop, so memory stays flat whatever
the object's size (one S3 part plus a few chunks).
"""

import asyncio
import io
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from services.storage.config import StorageConfig

log = logging.getLogger(__name__)

PART_SIZE = 5 * 1024 * 1024  # the S3 minimum; bigger parts only cost memory
# Parts of one upload sent at once. 2 is faster (the next part goes out while the server
# still stores the previous one: 20 MB uploads at ~64% of a direct put instead of ~55%)
# but each part in flight holds its 5 MiB buffer, and with 2 the storage service's peak
# memory during a 40 MB upload measured 27-35 MiB here, over the 30 MB the streaming
# test (and issue 5) allow; with 1 it measured 21-28 MiB.
PARALLEL_PARTS = 1


class PipeAborted(Exception):
    """The producer gave up (cap breached, client gone); the upload must not complete."""


class ChunkPipe(io.RawIOBase):
    """A file-like reader fed chunk by chunk from the event loop, at most `depth` ahead.

    `read()` runs in the upload thread and blocks until data arrives; `write()` is awaited
    on the loop and waits while `depth` chunks are pending (backpressure to the client).
    Every chunk handed to the reader is also passed to `tee` (e.g. a spool file).
    """

    def __init__(self, depth: int = 8, tee: Callable[[bytes], object] | None = None) -> None:
        super().__init__()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue()
        self._slots = asyncio.Semaphore(depth)
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._eof = False
        self._tee = tee
        self._aborted = threading.Event()
        self._reader_gone = False

    async def write_chunk(self, chunk: bytes) -> None:
        """Queues `chunk`, waiting while the reader is `depth` chunks behind."""
        await self._slots.acquire()
        if self._reader_gone:
            self._slots.release()  # wake the next waiter too
            raise PipeAborted("the upload stopped reading")
        self._queue.put(chunk)

    def reader_gone(self) -> None:
        """Called on the loop when the upload ended early, so writers stop waiting."""
        self._reader_gone = True
        self._slots.release()

    def finish(self) -> None:
        self._queue.put(None)

    def abort(self) -> None:
        self._aborted.set()
        self._queue.put(PipeAborted("upload aborted"))

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        """The next chunk from the loop, or b"" at the end."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            self._eof = True
            return b""
        self._loop.call_soon_threadsafe(self._slots.release)
        if self._aborted.is_set():
            raise PipeAborted("upload aborted")
        if self._tee is not None:
            self._tee(item)
        return item

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        """Up to `size` bytes (all when negative), blocking until that many or EOF.

        Returning whole parts in one piece matters: the SDK grows its part buffer by
        concatenation, so many small reads would cost several copies of each part.
        """
        pieces = [self._buffer] if self._buffer else []
        have = len(self._buffer)
        self._buffer = b""
        while (size < 0 or have < size) and not self._eof:
            pieces.append(self._next())
            have += len(pieces[-1])
        if 0 <= size < have:
            # Split only the last chunk, never the whole part.
            last = pieces.pop()
            keep = len(last) - (have - size)
            pieces.append(last[:keep])
            self._buffer = last[keep:]
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        return data

    def readinto(self, buffer: Any) -> int:
        """Fills `buffer` completely unless the stream ends first; returns the count."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and not (self._eof and not self._buffer):
            if not self._buffer:
                self._buffer = self._next()
                if not self._buffer:
                    break
            n = min(len(view) - filled, len(self._buffer))
            view[filled : filled + n] = self._buffer[:n]
            self._buffer = self._buffer[n:]
            filled += n
        return filled


class ObjectStore(Protocol):
    """What the storage service needs from S3."""

    async def ensure_bucket(self) -> None: ...
    async def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None: ...
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    async def get_bytes(self, key: str) -> bytes: ...
    async def remove(self, key: str) -> None: ...
    async def ping(self) -> bool: ...


class UnsignedPayloadMinio(Minio):
    """A minio client that signs request bodies as UNSIGNED-PAYLOAD, as the SDK itself
    does over TLS. Over plain HTTP the SDK would hash every part for the signature and
    the server would hash it again to check: ~20% of an upload's CPU. Headers, query and
    credentials stay signed; what plain HTTP loses is tamper-evidence of the body, so
    plain HTTP is for loopback or a private network only (WEFT_S3_SECURE otherwise).
    The SDK's Content-MD5 over TLS is dropped too: only Object Lock buckets require it,
    and ours have none."""

    def _build_headers(
        self,
        host: str,
        headers: dict[str, Any] | None = None,
        body: bytes | None = None,
        creds: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        if not body or creds is None:
            return super()._build_headers(host, headers, body, creds)  # type: ignore[no-any-return]
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        return built, date


class MinioStore:
    """ObjectStore on the minio SDK (MinIO in production, SeaweedFS locally)."""

    def __init__(self, config: StorageConfig, max_concurrent_uploads: int = 16) -> None:
        http = urllib3.PoolManager(
            maxsize=max_concurrent_uploads,
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.2),
        )
        self.client = UnsignedPayloadMinio(
            config.s3_endpoint,
            access_key=config.s3_access_key,
            secret_key=config.s3_secret_key,
            secure=config.s3_secure,
            region=config.s3_region,
            http_client=http,
        )
        self.bucket = config.s3_bucket
        # Own threads: uploads block on their pipe for as long as the client sends, so
        # they must not starve asyncio's default executor.
        self._executor = ThreadPoolExecutor(max_concurrent_uploads, thread_name_prefix="s3")
        # Separate, so part sends never wait behind uploads that wait on their parts.
        self._part_senders = ThreadPoolExecutor(
            max_concurrent_uploads * PARALLEL_PARTS, thread_name_prefix="s3-part"
        )

    async def _call(self, fn: Callable[..., object], *args: object, **kwargs: object) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def ensure_bucket(self) -> None:
        if not await self._call(self.client.bucket_exists, self.bucket):
            try:
                await self._call(self.client.make_bucket, self.bucket)
            except S3Error as exc:
                # Another replica created it between our check and our call.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def _put_parts(self, key: str, stream: BinaryIO, content_type: str) -> None:
        # SDK's put_object(length=-1) keeps several copies of each part alive (it grows
        # and re-slices its buffer); driving the multipart calls ourselves keeps exactly
        # PARALLEL_PARTS parts in memory. These methods are private but stable across
        # minio 7.x, which is pinned.
        client = self.client
        buffer = bytearray(PART_SIZE)
        size = stream.readinto(buffer)  # type: ignore[attr-defined]
        if size < PART_SIZE:
            data = bytes(memoryview(buffer)[:size])
            client.put_object(self.bucket, key, io.BytesIO(data), size, content_type=content_type)
            return
        upload_id = client._create_multipart_upload(
            self.bucket, key, {"Content-Type": content_type}
        )
        # Parts in flight, oldest first, each with the buffer it owns until it is sent.
        in_flight: deque[tuple[int, Future[str], bytearray]] = deque()
        parts: list[Part] = []
        spare: list[bytearray] = []

        def settle_oldest() -> None:
            number, sent, owned = in_flight.popleft()
            parts.append(Part(number, sent.result()))
            spare.append(owned)

        try:
            number = 0
            while size:
                number += 1
                # The last, shorter part is a view of the buffer, not a copy of it.
                body: Any = buffer if size == PART_SIZE else memoryview(buffer)[:size]
                sent = self._part_senders.submit(
                    client._upload_part, self.bucket, key, body, None, upload_id, number
                )
                in_flight.append((number, sent, buffer))
                if len(in_flight) == PARALLEL_PARTS:
                    settle_oldest()
                buffer = spare.pop() if spare else bytearray(PART_SIZE)
                size = stream.readinto(buffer)  # type: ignore[attr-defined]
            while in_flight:
                settle_oldest()
            client._complete_multipart_upload(self.bucket, key, upload_id, parts)
        except BaseException:
            for _, sent, _ in in_flight:
                sent.cancel()
            wait([sent for _, sent, _ in in_flight])
            try:
                client._abort_multipart_upload(self.bucket, key, upload_id)
            except Exception:
                log.warning("could not abort multipart upload", extra={"key": key})
            raise

    async def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        await self._call(self._put_parts, key, stream, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await self._call(
            self.client.fput_object,
            self.bucket,
            key,
            str(path),
            content_type=content_type,
            part_size=PART_SIZE,
        )

    async def get_bytes(self, key: str) -> bytes:
        def fetch() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        data = await self._call(fetch)
        assert isinstance(data, bytes)
        return data

    async def remove(self, key: str) -> None:
        await self._call(self.client.remove_object, self.bucket, key)

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self._call(self.client.bucket_exists, self.bucket), 2.0)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._part_senders.shutdown(wait=False, cancel_futures=True)
