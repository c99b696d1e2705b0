"""Object storage behind a small interface, with a minio-SDK implementation.

The SDK is synchronous, so its calls run in a dedicated thread pool. Multipart uploads
send each part straight from a section of the upload's spool file (`FileSection`), a
block at a time: memory stays flat whatever the object's size or the parts in flight.
"""

import asyncio
import io
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from services.storage.config import StorageConfig

log = logging.getLogger(__name__)

# Bytes read from a spool file per socket send; also all a part in flight holds.
SEND_BLOCK = 128 * 1024


class FileSection(io.RawIOBase):
    """`length` bytes of an open file from `offset`, as a seekable reader.

    Reads use pread, so many sections of one file can be read at once from different
    threads. `len()` gives the section's size (the Content-Length); seeking lets
    urllib3 rewind the body when it retries a request."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._length = length
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}
        self._position = min(max(0, base[whence] + position), self._length)
        return self._position

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        left = self._length - self._position
        if size < 0 or size > left:
            size = left
        data = os.pread(self._fd, size, self._offset + self._position) if size else b""
        if len(data) < size:
            raise OSError(f"spool file ended {size - len(data)} bytes early")
        self._position += len(data)
        return data


class MultipartStore(Protocol):
    """The writes a `SpooledUpload` makes."""

    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    async def start_multipart(self, key: str, content_type: str) -> str: ...
    async def put_part(
        self, key: str, upload_id: str, number: int, fd: int, offset: int, length: int
    ) -> str: ...
    async def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None: ...
    async def abort_multipart(self, key: str, upload_id: str) -> None: ...


class ObjectStore(MultipartStore, Protocol):
    """What the storage service needs from S3."""

    async def ensure_bucket(self) -> None: ...
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
    and ours have none. Bodies may also be `FileSection`s, streamed by urllib3."""

    def _build_headers(
        self,
        host: str,
        headers: dict[str, Any] | None = None,
        body: Any = None,
        creds: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        if not body:
            return super()._build_headers(host, headers, body, creds)  # type: ignore[no-any-return]
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        if creds is not None:
            built["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        return built, date


class MinioStore:
    """ObjectStore on the minio SDK (MinIO in production, SeaweedFS locally)."""

    def __init__(self, config: StorageConfig, max_concurrent_calls: int = 32) -> None:
        http = urllib3.PoolManager(
            maxsize=max_concurrent_calls,
            timeout=urllib3.Timeout(connect=5.0, read=60.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.2),
            blocksize=SEND_BLOCK,
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
        # Own threads, so slow S3 calls never starve asyncio's default executor.
        self._executor = ThreadPoolExecutor(max_concurrent_calls, thread_name_prefix="s3")

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

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        def put() -> None:
            with path.open("rb") as file:
                length = os.fstat(file.fileno()).st_size
                body = FileSection(file.fileno(), 0, length) if length else b""
                headers = {"Content-Type": content_type}
                self.client._put_object(self.bucket, key, body, headers)  # type: ignore[arg-type]

        await self._call(put)

    # The multipart calls are the SDK's private methods: its public put_object reads
    # whole parts into memory, and they are stable across minio 7.x, which is pinned.

    async def start_multipart(self, key: str, content_type: str) -> str:
        upload_id = await self._call(
            self.client._create_multipart_upload, self.bucket, key, {"Content-Type": content_type}
        )
        assert isinstance(upload_id, str)
        return upload_id

    async def put_part(
        self, key: str, upload_id: str, number: int, fd: int, offset: int, length: int
    ) -> str:
        body = FileSection(fd, offset, length)
        etag = await self._call(
            self.client._upload_part, self.bucket, key, body, None, upload_id, number
        )
        assert isinstance(etag, str)
        return etag

    async def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts = [Part(number, etag) for number, etag in enumerate(etags, start=1)]
        await self._call(self.client._complete_multipart_upload, self.bucket, key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._call(self.client._abort_multipart_upload, self.bucket, key, upload_id)

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
