"""MinioStore's multipart driver and request signing, against a fake SDK client."""

import hashlib
import io
import threading
import time
from typing import Any

import pytest
from minio.datatypes import Part

from services.storage import s3
from services.storage.config import StorageConfig
from services.storage.s3 import PART_SIZE, MinioStore, UnsignedPayloadMinio

CONFIG = StorageConfig.from_env(
    {
        "WEFT_S3_ENDPOINT": "127.0.0.1:1",
        "WEFT_S3_ACCESS_KEY": "k",
        "WEFT_S3_SECRET_KEY": "secret",
        "WEFT_S3_SECURE": "false",
    }
)


class FakeSDK:
    """Records the multipart calls; part sends are slow, so parallelism shows."""

    def __init__(self, fail_part: int | None = None) -> None:
        self.parts: dict[int, bytes] = {}
        self.completed: list[Part] | None = None
        self.aborted = False
        self.single: bytes | None = None
        self.fail_part = fail_part
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def put_object(self, bucket: str, key: str, data: Any, length: int, **_: Any) -> None:
        self.single = data.read()

    def _create_multipart_upload(self, bucket: str, key: str, headers: Any) -> str:
        return "upload-1"

    def _upload_part(
        self, bucket: str, key: str, data: Any, headers: Any, upload_id: str, number: int
    ) -> str:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        body = bytes(data)  # copied now: the caller may reuse its buffer afterwards
        time.sleep(0.05)
        with self._lock:
            self.in_flight -= 1
        if number == self.fail_part:
            raise OSError("S3 refused the part")
        self.parts[number] = body
        return f"etag-{number}"

    def _complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[Part]
    ) -> None:
        self.completed = parts

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted = True


@pytest.fixture
def store() -> Any:
    made = MinioStore(CONFIG)
    yield made
    made.close()


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("parallel", [1, 2])
def test_parts_complete_in_order_with_at_most_the_limit_in_flight(
    store: MinioStore, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    monkeypatch.setattr(s3, "PARALLEL_PARTS", parallel)
    data = payload(3 * PART_SIZE + 12345)
    sdk = FakeSDK()
    store.client = sdk  # type: ignore[assignment]
    store._put_parts("k", io.BytesIO(data), "text/csv")
    assert [p.part_number for p in sdk.completed or []] == [1, 2, 3, 4]
    assert [p.etag for p in sdk.completed or []] == ["etag-1", "etag-2", "etag-3", "etag-4"]
    assert b"".join(sdk.parts[n] for n in sorted(sdk.parts)) == data
    assert sdk.max_in_flight == parallel
    assert not sdk.aborted


def test_a_small_object_is_one_put(store: MinioStore) -> None:
    sdk = FakeSDK()
    store.client = sdk  # type: ignore[assignment]
    store._put_parts("k", io.BytesIO(b"a,b\n1,2\n"), "text/csv")
    assert sdk.single == b"a,b\n1,2\n"
    assert sdk.completed is None


def test_a_failed_part_aborts_the_upload(store: MinioStore) -> None:
    sdk = FakeSDK(fail_part=2)
    store.client = sdk  # type: ignore[assignment]
    with pytest.raises(OSError, match="refused"):
        store._put_parts("k", io.BytesIO(payload(4 * PART_SIZE)), "text/csv")
    assert sdk.aborted
    assert sdk.completed is None
    assert sdk.in_flight == 0  # nothing still sending after the abort


def test_bodies_are_signed_unsigned_payload_over_plain_http() -> None:
    client = UnsignedPayloadMinio("127.0.0.1:1", access_key="k", secret_key="s", secure=False)
    creds = client._provider.retrieve()  # type: ignore[union-attr]
    headers, _ = client._build_headers("127.0.0.1:1", {}, b"x" * 1000, creds)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["Content-Length"] == "1000"
    # Requests without a body keep the SDK's own (empty-body) hash.
    headers, _ = client._build_headers("127.0.0.1:1", {}, None, creds)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
