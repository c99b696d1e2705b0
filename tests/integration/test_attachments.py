"""POST/GET /api/v1/attachments on the real stack: every kind, hostile files, ownership."""

import hashlib

import aiohttp
import pytest

from devstack.stack import Stack
from tests.integration.attachments_support import ATTACHMENT_FIELDS, form, upload
from tests.support import storage_files as files
from tests.support.runs import Account, create_user
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.grpc_client import open_channel

XLSX_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX_CT = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_user(stack, "attach-owner@example.com")


@pytest.fixture(scope="module")
def stranger(stack: Stack) -> Account:
    return create_user(stack, "attach-stranger@example.com")


KINDS = [
    ("data.csv", files.csv_bytes(500), "csv", "text/csv", 501, "name 500"),
    (
        "book.xlsx",
        files.xlsx_bytes({"Q1": [["region", "sales"], ["north", 12]], "Q2": [["a"], [1]]}),
        "xlsx",
        XLSX_CT,
        4,
        "north,12",
    ),
    (
        "report.pdf",
        files.pdf_bytes(["First page text", "Second"]),
        "pdf",
        "application/pdf",
        0,
        "First page text",
    ),
    ("memo.docx", files.docx_bytes(["Dear team"], [["k", "v"]]), "docx", DOCX_CT, 0, "k | v"),
    ("data.json", b'{"items": [1, 2]}', "json", "application/json", 0, '"items": ['),
    ("notes.txt", b"plain notes", "txt", "text/plain", 0, "plain notes"),
    ("README.md", b"# Heading\n\ntext", "md", "text/markdown", 0, "# Heading"),
    ("pic.png", files.png_bytes(64, 32), "image", "image/png", 0, "PNG, 64x32"),
    ("pic.jpg", files.jpeg_bytes(640, 480), "image", "image/jpeg", 0, "JPEG, 640x480"),
    ("anim.gif", files.gif_bytes(10, 20), "image", "image/gif", 0, "GIF, 10x20"),
    ("pic.webp", files.webp_bytes(300, 200), "image", "image/webp", 0, "WEBP, 300x200"),
]


@pytest.mark.parametrize(("filename", "data", "kind", "content_type", "rows", "snippet"), KINDS)
async def test_every_kind_is_stored_and_extracted(
    stack: Stack,
    http: aiohttp.ClientSession,
    owner: Account,
    filename: str,
    data: bytes,
    kind: str,
    content_type: str,
    rows: int,
    snippet: str,
) -> None:
    status, body = await upload(http, stack, owner, filename, data)
    assert status == 201, body
    att = body["data"]
    assert set(att) == ATTACHMENT_FIELDS
    assert att["id"].startswith("att_")
    assert att["original_filename"] == filename
    assert (att["kind"], att["content_type"]) == (kind, content_type)
    assert att["byte_size"] == len(data)
    assert att["sha256"] == hashlib.sha256(data).hexdigest()
    assert att["extraction_status"] == "extracted"
    assert att["row_count"] == rows and att["truncated"] is False

    async with http.get(
        f"{stack.base_url}/api/v1/attachments/{att['id']}", headers=owner.headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["data"] == att

    texts = await _read_text(stack, [att["id"]], owner.user_id)
    assert snippet in texts.items[0].text
    assert texts.items[0].attachment.original_filename == filename


async def _read_text(
    stack: Stack, ids: list[str], owner_user_id: str, max_chars: int = 0
) -> storage_pb2.ReadTextResponse:
    channel = open_channel(stack.env["WEFT_STORAGE_ADDR"])
    try:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        request = storage_pb2.ReadTextRequest(
            attachment_ids=ids, owner_user_id=owner_user_id, max_chars=max_chars
        )
        response: storage_pb2.ReadTextResponse = await stub.ReadText(request, timeout=10)
        return response
    finally:
        await channel.close()


async def test_csv_over_5000_rows_is_truncated_and_read_text_caps(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    status, body = await upload(http, stack, owner, "big.csv", files.csv_bytes(7000))
    assert status == 201
    att = body["data"]
    assert (att["row_count"], att["truncated"]) == (5000, True)
    full = (await _read_text(stack, [att["id"]], owner.user_id)).items[0]
    assert "only the first 5,000 rows were read" in full.text
    short = (await _read_text(stack, [att["id"]], owner.user_id, max_chars=1000)).items[0]
    assert short.truncated and len(short.text) <= 1000 and "[Truncated" in short.text


@pytest.mark.parametrize(
    ("filename", "data", "kind", "error"),
    [
        ("bomb.docx", files.zip_bomb("docx"), "docx", "zip bomb"),
        ("bomb.xlsx", files.zip_bomb("xlsx"), "xlsx", "zip bomb"),
        (
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj <<\n/Type /Catalog\n" + b"\x00garbage" * 50,
            "pdf",
            "could not be read",
        ),
        ("deep.json", files.deep_json(10_000), "json", "nested deeper than"),
        ("empty.txt", b"", "txt", "empty"),
    ],
)
async def test_hostile_files_end_in_failed(
    stack: Stack,
    http: aiohttp.ClientSession,
    owner: Account,
    filename: str,
    data: bytes,
    kind: str,
    error: str,
) -> None:
    status, body = await upload(http, stack, owner, filename, data)
    assert status == 201, body
    att = body["data"]
    assert att["kind"] == kind
    assert att["extraction_status"] == "failed"
    assert error in att["extraction_error"]
    assert set(att) == ATTACHMENT_FIELDS | {"extraction_error"}


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("disguised.csv", bytes(range(256)) * 64),
        ("program.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 4000),
        ("archive.zip", files.zip_bytes({"photos/a.bin": b"x" * 100})),
    ],
)
async def test_unsupported_content_is_415(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, filename: str, data: bytes
) -> None:
    status, body = await upload(http, stack, owner, filename, data)
    assert status == 415
    assert body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_filenames_are_sanitised(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    status, body = await upload(http, stack, owner, "../../etc/x\x01y\x7f.txt", b"hi")
    assert status == 201
    assert body["data"]["original_filename"] == "xy.txt"

    # A client that sends the name raw, path separators and all.
    boundary = "b0undary"
    raw = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="..\\..\\windows/../../secret.txt"\r\n\r\nhello\r\n--{boundary}--\r\n'
    ).encode()
    async with http.post(
        f"{stack.base_url}/api/v1/attachments",
        data=raw,
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    ) as response:
        assert response.status == 201
        assert (await response.json())["data"]["original_filename"] == "secret.txt"


async def test_exactly_one_file_part(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    url = f"{stack.base_url}/api/v1/attachments"
    writer = aiohttp.MultipartWriter("form-data")
    writer.append("just a field").set_content_disposition("form-data", name="note")
    async with http.post(url, data=writer, headers=owner.headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert (error["code"], error["param"]) == ("MISSING_PARAM", "file")

    writer = form("a.txt", b"one")
    second = writer.append(b"two", {"Content-Type": "text/plain"})
    second.set_content_disposition("form-data", name="other", filename="b.txt")
    async with http.post(url, data=writer, headers=owner.headers) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "INVALID_PARAM"

    async with http.post(url, json={"file": "x"}, headers=owner.headers) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_only_the_owner_sees_an_attachment(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, stranger: Account
) -> None:
    status, body = await upload(http, stack, owner, "mine.txt", b"private")
    assert status == 201
    url = f"{stack.base_url}/api/v1/attachments/{body['data']['id']}"
    async with http.get(url, headers=stranger.headers) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
    async with http.get(
        f"{stack.base_url}/api/v1/attachments/att_doesnotexist", headers=owner.headers
    ) as response:
        assert response.status == 404
    async with http.get(url) as response:
        assert response.status == 401


async def test_free_plan_cannot_upload(stack: Stack, http: aiohttp.ClientSession) -> None:
    free = create_user(stack, "attach-free@example.com", plan="free")
    status, body = await upload(http, stack, free, "a.txt", b"x")
    assert status == 402
    assert body["error"]["code"] == "PAID_PLAN_REQUIRED"
