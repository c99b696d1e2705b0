"""Object storage behind a small interface, with a minio-SDK implementation.

The SDK is synchronous: uploads run in a dedicated thread pool and read from a
`ChunkPipe`, a bounded hand-off from the event loop, so memory stays flat whatever
the object's size (one S3 part plus a few chunks).
"""

import asyncio
import io
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Protocol

import urllib3
from minio import Minio
from minio.error import S3Error

from services.storage.config import StorageConfig

PART_SIZE = 5 * 1024 * 1024  # the S3 minimum; bigger parts only cost memory


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

    def _next(self) -> None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            self._eof = True
            return
        self._loop.call_soon_threadsafe(self._slots.release)
        if self._aborted.is_set():
            raise PipeAborted("upload aborted")
        if self._tee is not None:
            self._tee(item)
        self._buffer += item

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while not self._eof and (size < 0 or len(self._buffer) < size):
            self._next()
            if size >= 0 and self._buffer:
                break  # hand over what we have; minio loops until its part is full
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class ObjectStore(Protocol):
    """What the storage service needs from S3."""

    async def ensure_bucket(self) -> None: ...
    async def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None: ...
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get_bytes(self, key: str) -> bytes: ...
    async def remove(self, key: str) -> None: ...
    async def ping(self) -> bool: ...


class MinioStore:
    """ObjectStore on the minio SDK (MinIO in production, SeaweedFS locally)."""

    def __init__(self, config: StorageConfig, max_concurrent_uploads: int = 16) -> None:
        http = urllib3.PoolManager(
            maxsize=max_concurrent_uploads,
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.2),
        )
        self.client = Minio(
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

    async def put_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        await self._call(
            self.client.put_object,
            self.bucket,
            key,
            stream,
            -1,
            content_type=content_type,
            part_size=PART_SIZE,
        )

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
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
