"""Upload caps (413 as soon as known) and flat memory while streaming, on the real stack."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devstack.stack import S3_BUCKET, Stack
from tests.integration.attachments_support import form, upload, zeros
from tests.support.runs import Account, create_user

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_user(stack, "stream-owner@example.com")


def _objects(stack: Stack) -> set[str]:
    client = stack.s3.client()
    return {o.object_name or "" for o in client.list_objects(S3_BUCKET, recursive=True)}


async def _objects_once_settled(stack: Stack, expected: set[str], seconds: float = 10) -> set[str]:
    """The bucket's objects once a refused upload's cleanup had time to finish.

    The gateway answers as soon as it cancels the stream; storage then removes the
    partial object on its side, so the bucket converges shortly after the answer."""
    deadline = asyncio.get_running_loop().time() + seconds
    found = _objects(stack)
    while found != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        found = _objects(stack)
    return found


async def test_declared_content_length_over_cap_is_413_before_the_body(
    stack: Stack, owner: Account
) -> None:
    host, port = stack.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        # Announce 60 MiB and send none of it: the answer must come anyway.
        writer.write(
            (
                "POST /api/v1/attachments HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {owner.token}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                f"Content-Length: {60 * MIB}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
    finally:
        writer.close()


async def test_csv_over_the_table_cap_is_413_mid_stream_and_nothing_is_kept(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    before = _objects(stack)

    async def csv_rows() -> AsyncIterator[bytes]:
        yield b"id,value\n"
        async for chunk in zeros(21 * MIB, fill=b"1,22\n"):
            yield chunk

    # Chunked transfer: no Content-Length, so only counting can catch it.
    status, body = await upload(http, stack, owner, "huge.csv", csv_rows())
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "20 MiB" in body["error"]["message"]
    assert await _objects_once_settled(stack, before) == before


async def test_any_file_over_the_general_cap_is_413_mid_stream(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    before = _objects(stack)
    status, body = await upload(http, stack, owner, "huge.txt", zeros(51 * MIB))
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await _objects_once_settled(stack, before) == before


def _reset_peak(pid: int) -> None:
    # "5" resets VmHWM to the current RSS (proc(5)), so the peak measures this upload only.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing for {pid}")


async def test_a_40_mb_upload_keeps_gateway_and_storage_memory_flat(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    pids = {name: stack.processes[name].pid for name in ("gateway", "storage")}
    baseline = {}
    for name, pid in pids.items():
        assert pid is not None
        _reset_peak(pid)
        baseline[name] = _kib(pid, "VmHWM")
    size = 40 * MIB
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        async for chunk in zeros(size, fill=b"streamed text line\n"):
            digest.update(chunk)
            yield chunk

    status, data = await upload(http, stack, owner, "big.txt", body())
    assert status == 201, data
    assert data["data"]["byte_size"] == size
    assert data["data"]["sha256"] == digest.hexdigest()
    growth = {name: (_kib(pid, "VmHWM") - baseline[name]) / 1024 for name, pid in pids.items()}  # type: ignore[arg-type]
    print(f"peak RSS growth during a 40 MB upload (MiB): {growth}")
    for name, mib in growth.items():
        assert mib < 30, f"{name} peak RSS grew by {mib:.1f} MiB"


async def test_a_second_file_part_refuses_the_whole_upload(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    before = _objects(stack)
    writer = form("first.txt", b"first file")
    part = writer.append(b"second", {"Content-Type": "text/plain"})
    part.set_content_disposition("form-data", name="again", filename="second.txt")
    async with http.post(
        f"{stack.base_url}/api/v1/attachments", data=writer, headers=owner.headers
    ) as response:
        assert response.status == 400
    assert await _objects_once_settled(stack, before) == before


async def test_concurrent_multipart_uploads_each_store_their_own_bytes(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    # Parts are read back from each upload's spool file while it is still written:
    # three uploads of three parts each at once must not mix their files or parts.
    bodies = [
        b"".join(f"{n},line {i}\n".encode() for i in range(1_100_000))[: 12 * MIB + 1234 * n]
        for n in range(3)
    ]
    answers = await asyncio.gather(
        *(upload(http, stack, owner, f"file{n}.txt", body) for n, body in enumerate(bodies))
    )
    client = stack.s3.client()

    def stored(key: str) -> bytes:
        response = client.get_object(S3_BUCKET, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    for body, (status, data) in zip(bodies, answers, strict=True):
        assert status == 201, data
        assert data["data"]["byte_size"] == len(body)
        assert data["data"]["sha256"] == hashlib.sha256(body).hexdigest()
        key = f"attachments/{data['data']['id']}/original"
        assert (
            hashlib.sha256(await asyncio.to_thread(stored, key)).hexdigest()
            == (data["data"]["sha256"])
        )
