"""Hostile and oversized uploads through the real stack (issue #14): each must get a
clear 4xx or a bounded `failed` extraction, never a 500, and never stall other accounts."""

import asyncio
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest

from devstack.stack import S3_BUCKET, Stack
from tests.integration.attachments_support import form, upload
from tests.support import storage_files as files
from tests.support.billing import Stub
from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    create_run,
    create_user,
    wait_for,
)
from weft.billing.v1 import billing_pb2
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.errors import from_rpc_error
from weftcore.grpc_client import open_channel
from weftcore.tokens import estimate_tokens

pytestmark = pytest.mark.timeout(240)

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module")
def uploader(stack: Stack) -> Account:
    return create_user(stack, "hostile-uploader@example.com")


@pytest.fixture(scope="module")
def bystander(stack: Stack) -> Account:
    return create_user(stack, "hostile-bystander@example.com")


async def test_escaped_quotes_json_fails_as_invalid_json_not_at_the_deadline(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account
) -> None:
    # 100 KB of \" made the depth check quadratic: it ran into the 20 s extraction
    # deadline. Now it is scanned at once and json.loads names the real problem.
    status, body = await upload(http, stack, uploader, "quotes.json", b'\\"' * (50 * KIB))
    assert status == 201, body
    data = body["data"]
    assert data["extraction_status"] == "failed"
    assert data["extraction_error"].startswith("Invalid JSON"), data["extraction_error"]


async def test_one_accounts_slow_files_do_not_stall_another_accounts_upload(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account, bystander: Account
) -> None:
    # A perfectly valid but slow file: 2,000 pages take pypdf seconds of CPU each.
    slow_pdf = files.pdf_bytes([f"Page {n} of a long report." for n in range(2000)])
    finished: list[str] = []

    async def timed(name: str, account: Account, filename: str, data: bytes) -> Any:
        answer = await upload(http, stack, account, filename, data)
        finished.append(name)
        return answer

    slow = [
        asyncio.create_task(timed(f"slow{n}", uploader, f"report{n}.pdf", slow_pdf))
        for n in range(6)
    ]
    await asyncio.sleep(1.0)  # the six are in extraction (each takes seconds)
    status, body = await timed("csv", bystander, "small.csv", b"name,hours\nAnn,3\nBob,4\n")
    assert status == 201, body
    assert body["data"]["extraction_status"] == "extracted"
    # The bystander's CSV did not queue behind the uploader's files: it was done while
    # some of them were still waiting (behind all six it would come last). Not "first":
    # on a loaded machine one slow file may finish before the CSV is even sent.
    slow_done = [name for name in finished if name.startswith("slow")]
    assert finished[-1] == "csv" and len(slow_done) < len(slow), finished
    # ...which waited for their own account's slots, and none of them failed.
    for status, body in await asyncio.gather(*slow):
        assert status == 201, body
        assert body["data"]["extraction_status"] == "extracted", body
        assert body["data"]["kind"] == "pdf"


async def _upload_all(
    http: aiohttp.ClientSession, stack: Stack, account: Account, files_: dict[str, bytes]
) -> list[str]:
    ids = []
    for filename, data in files_.items():
        status, body = await upload(http, stack, account, filename, data)
        assert status == 201, body
        assert body["data"]["extraction_status"] == "extracted", body
        ids.append(body["data"]["id"])
    return ids


async def test_an_llm_run_on_five_2m_character_attachments_is_estimated_not_a_500(
    stack: Stack, http: aiohttp.ClientSession, billing: Stub
) -> None:
    account = create_account(stack)
    text = (b"a line of plain text in a very long file\n" * 50_000)[:2_000_000]
    ids = await _upload_all(http, stack, account, {f"long{n}.txt": text for n in range(5)})
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "summarize",
                "type": "llm",
                "model": "fake:echo",
                "max_tokens": 64,
                "prompt": "{{ input_text }}\n\n{{ attachments_text }}",
            }
        ],
    )
    # Their texts together are ~10 MB: reading them back for the estimate overflowed
    # one gRPC reply (8 MiB) and the request was a 500.
    created = await create_run(http, stack, account, workflow_id, "Summarise.", attachment_ids=ids)
    ledger = await billing.ListLedger(
        billing_pb2.ListLedgerRequest(account_id=account.user_id, limit=100)
    )
    [reserve] = [
        e.amount_micros for e in ledger.entries if e.run_id == created["id"] and e.kind == "reserve"
    ]
    # The texts still count: 1 micro-USD per input token for fake:echo.
    assert reserve >= 5 * estimate_tokens(text.decode())
    run = await wait_for(http, stack, account, created["id"], timeout=120)
    assert run["status"] == "completed", run

    # Asked for whole, the same texts are refused clearly instead of failing in transit.
    channel = open_channel(stack.env["WEFT_STORAGE_ADDR"])
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await storage_pb2_grpc.StorageServiceStub(channel).ReadText(
                storage_pb2.ReadTextRequest(attachment_ids=ids, owner_user_id=account.user_id),
                timeout=30,
            )
    finally:
        await channel.close()
    assert from_rpc_error(info.value).code == "PAYLOAD_TOO_LARGE"


async def test_a_run_with_twenty_large_attachments_reads_them_all(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account
) -> None:
    # 270,000 three-byte characters each: the 200,000 a run reads of each come to
    # 12 MB for twenty, more than one gRPC reply may carry.
    text = ("日本語のテキスト。" * 30_000).encode()
    ids = await _upload_all(http, stack, uploader, {f"jp{n}.txt": text for n in range(20)})
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "count",
                "type": "template",
                "output": "json",
                "template": "{{ {'files': attachments | length, "
                "'cut': attachments | selectattr('truncated') | list | length, "
                "'chars': attachments_text | length} | tojson }}",
            }
        ],
    )
    created = await create_run(http, stack, uploader, workflow_id, "Count.", attachment_ids=ids)
    run = await wait_for(http, stack, uploader, created["id"], timeout=120)
    assert run["status"] == "completed", run
    assert run["result"]["files"] == 20 and run["result"]["cut"] == 20
    assert run["result"]["chars"] > 20 * 200_000 * 0.99


def _objects(stack: Stack) -> set[str]:
    client = stack.s3.client()
    return {o.object_name or "" for o in client.list_objects(S3_BUCKET, recursive=True)}


def _multipart_uploads(stack: Stack) -> list[str]:
    listing = stack.s3.client()._list_multipart_uploads(S3_BUCKET)
    return [u.object_name or "" for u in listing.uploads]


async def _bucket_once_settled(stack: Stack, expected: set[str]) -> set[str]:
    """The bucket's objects once a refused upload's cleanup had time to finish (storage
    cleans up around the gateway's answer, not necessarily before it)."""
    deadline = asyncio.get_running_loop().time() + 15
    while (found := await asyncio.to_thread(_objects, stack)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    return found


async def test_tables_over_their_cap_are_413_with_the_envelope_even_many_at_once(
    stack: Stack, http: aiohttp.ClientSession, uploader: Account
) -> None:
    # Over the 20 MiB table cap, under the 50 MiB general one: only storage, once it
    # has seen the kind, can refuse them. A gateway write racing that refusal made the
    # answer INTERNAL (most of the time with a few at once): a 500 for a 413.
    tables = {
        "big.csv": b"id,value\n" + b"1,22\n" * (40 * MIB // 5),
        "big.xlsx": b"PK\x03\x04" + bytes(40 * MIB),
    }
    workflow_id = await apply_workflow(
        stack, [{"id": "t", "type": "template", "template": "{{ attachments | length }}"}]
    )
    before = await asyncio.to_thread(_objects, stack)
    unfinished = await asyncio.to_thread(_multipart_uploads, stack)

    async def post(url: str, body: Any, n: int) -> tuple[int, dict[str, Any], str]:
        headers = {**uploader.headers, "X-Request-Id": f"req-hostile-{n}"}
        async with http.post(url, data=body, headers=headers) as response:
            return response.status, await response.json(), headers["X-Request-Id"]

    def run_form(filename: str, data: bytes) -> aiohttp.FormData:
        body = aiohttp.FormData(default_to_multipart=True)
        body.add_field("input_text", "Count the files.")
        body.add_field("table", data, filename=filename, content_type="application/octet-stream")
        return body

    requests = []
    for n, (filename, data) in enumerate(list(tables.items()) * 2):
        requests.append(post(f"{stack.base_url}/api/v1/attachments", form(filename, data), n))
        requests.append(
            post(
                f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
                run_form(filename, data),
                10 + n,
            )
        )
    for status, body, request_id in await asyncio.gather(*requests):
        assert status == 413, body
        assert body["error"]["code"] == "PAYLOAD_TOO_LARGE", body
        assert "over the 20 MiB limit for" in body["error"]["message"], body
        assert body["error"]["request_id"] == request_id
    assert await _bucket_once_settled(stack, before) == before
    assert await asyncio.to_thread(_multipart_uploads, stack) == unfinished


BOUNDARY = "hostile-boundary"


def _file_part_head(name: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()


async def _open_post(
    stack: Stack, path: str, account: Account, length: int, request_id: str
) -> asyncio.StreamWriter:
    """A raw HTTP request whose body the test writes (and cuts off) by hand."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {account.token}\r\nX-Request-Id: {request_id}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    return writer


async def _send_mib(writer: asyncio.StreamWriter, mib: int) -> None:
    block = b"a line of a file that will never end\n" * (MIB // 37) + b"\n" * (MIB % 37)
    for _ in range(mib):
        writer.write(block)
        await writer.drain()


def _gateway_errors(stack: Stack, request_id: str) -> list[str]:
    """ERROR lines the gateway logged for `request_id` (a client leaving is no fault)."""
    log = stack.options.root / "logs" / "gateway.log"
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if request_id in line and '"level": "ERROR"' in line
    ]


async def _until_a_multipart_upload_starts(stack: Stack, before: list[str]) -> None:
    """Waits until storage has begun sending the file to S3 in parts (its partial state
    then exists, and must be cleaned up)."""
    deadline = asyncio.get_running_loop().time() + 30
    while len(await asyncio.to_thread(_multipart_uploads, stack)) <= len(before):
        assert asyncio.get_running_loop().time() < deadline, "no multipart upload began"
        await asyncio.sleep(0.1)


async def _rows(stack: Stack, account: Account) -> int:
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "storage"})
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM attachments WHERE owner_user_id = $1", account.user_id
        )
        return count
    finally:
        await conn.close()


async def _nothing_left(
    stack: Stack, account: Account, objects: set[str], unfinished: list[str]
) -> None:
    """No row for `account`, the bucket as it was, no multipart upload left open:
    storage cleans up after the gateway cancels its stream, so this converges."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        state = (
            await _rows(stack, account),
            await asyncio.to_thread(_objects, stack),
            await asyncio.to_thread(_multipart_uploads, stack),
        )
        if state == (0, objects, unfinished):
            return
        assert asyncio.get_running_loop().time() < deadline, state
        await asyncio.sleep(0.2)


@pytest.fixture
def quitter(stack: Stack) -> Account:
    """A fresh account per test, so its rows are the test's own."""
    return create_user(stack)


async def test_a_client_gone_mid_file_leaves_no_row_object_or_multipart_upload(
    stack: Stack, quitter: Account
) -> None:
    objects = await asyncio.to_thread(_objects, stack)
    unfinished = await asyncio.to_thread(_multipart_uploads, stack)
    head = _file_part_head("file", "half.txt")
    request_id = f"req-gone-{quitter.user_id}"
    writer = await _open_post(
        stack, "/api/v1/attachments", quitter, len(head) + 24 * MIB, request_id
    )
    writer.write(head)
    await _send_mib(writer, 12)  # half the file, then stall...
    await _until_a_multipart_upload_starts(stack, unfinished)
    writer.transport.abort()  # ...and go away
    await _nothing_left(stack, quitter, objects, unfinished)
    assert _gateway_errors(stack, request_id) == []


async def test_a_multipart_run_cut_off_in_its_second_file_keeps_none_of_its_files(
    stack: Stack, quitter: Account
) -> None:
    workflow_id = await apply_workflow(
        stack, [{"id": "t", "type": "template", "template": "{{ attachments | length }}"}]
    )
    objects = await asyncio.to_thread(_objects, stack)
    unfinished = await asyncio.to_thread(_multipart_uploads, stack)
    first = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="input_text"\r\n\r\n'
            "Count the files.\r\n"
        ).encode()
        + _file_part_head("first", "first.txt")
        + b"a whole small file\r\n"
    )
    second = _file_part_head("second", "second.txt")
    request_id = f"req-cut-{quitter.user_id}"
    writer = await _open_post(
        stack,
        f"/api/v1/workflows/{workflow_id}/runs",
        quitter,
        len(first) + len(second) + 24 * MIB,
        request_id,
    )
    writer.write(first + second)
    await _send_mib(writer, 12)
    await _until_a_multipart_upload_starts(stack, unfinished)
    writer.transport.abort()
    # The first file was stored whole, but its id was never handed to anyone.
    await _nothing_left(stack, quitter, objects, unfinished)
    assert _gateway_errors(stack, request_id) == []


async def test_a_client_that_stalls_mid_file_gets_408_and_leaves_nothing(
    stack: Stack, strict_gateway: int, quitter: Account
) -> None:
    """Half a file, then silence with the connection open: the gateway's body watchdog
    (1 KiB/s over 1 s windows on this gateway) answers 408 and cancels the storage
    stream, which drops the partial upload."""
    objects = await asyncio.to_thread(_objects, stack)
    unfinished = await asyncio.to_thread(_multipart_uploads, stack)
    head = _file_part_head("file", "stalled.txt")
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_gateway)
    writer.write(
        (
            f"POST /api/v1/attachments HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {quitter.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + 24 * MIB}\r\n\r\n"
        ).encode()
        + head
    )
    await _send_mib(writer, 12)  # half the file, then nothing more
    try:
        answer = await asyncio.wait_for(reader.read(65536), 30)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"REQUEST_TIMEOUT"' in answer
    await _nothing_left(stack, quitter, objects, unfinished)
